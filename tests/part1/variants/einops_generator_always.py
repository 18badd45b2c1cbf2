"""einops for every reshape and broadcast, torch.lerp for the normalisation, cumprod indexed
from a padded table (index s, not s - 1), steps drawn as (rand * T).long() + 1, AdamW, and a
sampler that always draws z (also at the last step, where it multiplies it by zero)."""

import time

import torch as t
from einops import rearrange, repeat
from torch import nn

from w3d4_part1_diffusion_training_solution import DiffusionModel, TrainConfig, TrainLog


def normalize_img(img):
    return t.lerp(-t.ones_like(img), t.ones_like(img), img)


def denormalize_img(img):
    return t.lerp(t.zeros_like(img), t.ones_like(img), (img + 1) / 2)


def linear_schedule(max_steps, min_noise=0.0001, max_noise=0.02):
    return t.linspace(0, 1, max_steps) * (max_noise - min_noise) + min_noise


def q_eq2(x, num_steps, betas):
    out = x.clone()
    for beta in betas[:num_steps]:
        out.mul_((1 - beta) ** 0.5).add_(beta**0.5 * t.randn_like(out))
    return out


def q_eq4(x, num_steps, betas):
    alpha_bar = t.cumprod(1 - betas, 0)[num_steps - 1]
    return t.sqrt(alpha_bar) * x + t.sqrt(1 - alpha_bar) * t.randn_like(x)


class NoiseSchedule(nn.Module):
    def __init__(self, max_steps, device=None):
        super().__init__()
        self.max_steps = max_steps
        betas = linear_schedule(max_steps).to(device)
        self.register_buffer("betas", betas)
        self.register_buffer("alphas", 1 - betas)
        self.register_buffer("alpha_bars", t.cumprod(1 - betas, dim=0))

    def _lookup(self, table, num_steps):
        steps = t.as_tensor(num_steps, device=table.device)
        if steps.numel() and not bool(((steps >= 1) & (steps <= self.max_steps)).all()):
            raise IndexError(f"num_steps must lie in 1..{self.max_steps}, got {steps.tolist()}")
        padded = t.cat([table.new_zeros(1), table])  # an unused entry first, so that step s is at index s
        return padded[steps.long()]

    def beta(self, num_steps):
        return self._lookup(self.betas, num_steps)

    def alpha(self, num_steps):
        return self._lookup(self.alphas, num_steps)

    def alpha_bar(self, num_steps):
        return self._lookup(self.alpha_bars, num_steps)

    def __len__(self):
        return self.max_steps


def noise_img(img, noise_schedule, max_steps=None):
    top = len(noise_schedule) if max_steps is None else max_steps
    num_steps = (t.rand(img.shape[0], device=img.device) * top).long().clamp(max=top - 1) + 1
    noise = t.randn_like(img)
    ab = rearrange(noise_schedule.alpha_bar(num_steps), "b -> b 1 1 1")
    return num_steps, noise, ab.sqrt() * img + (1 - ab).sqrt() * noise


def reconstruct(noisy_img, noise, num_steps, noise_schedule):
    ab = rearrange(noise_schedule.alpha_bar(num_steps), "b -> b 1 1 1")
    return noisy_img / ab.sqrt() - (1 / ab - 1).sqrt() * noise


class TinyDiffuser(DiffusionModel):
    def __init__(self, img_shape, hidden_size=256, max_steps=1000):
        super().__init__()
        self.img_shape = tuple(img_shape)
        self.noise_schedule = None
        self.max_steps = max_steps
        c, h, w = img_shape
        self.net = nn.Sequential(nn.Linear(c * h * w + 1, hidden_size), nn.ReLU(), nn.Linear(hidden_size, hidden_size),
                                 nn.ReLU(), nn.Linear(hidden_size, c * h * w))

    def forward(self, images, num_steps):
        c, h, w = self.img_shape
        steps = rearrange(num_steps.float() / self.max_steps, "b -> b 1")
        flat = t.cat([rearrange(images, "b c h w -> b (c h w)"), steps], dim=-1)
        return rearrange(self.net(flat), "b (c h w) -> b c h w", c=c, h=h, w=w)


def train(model, trainset, config=TrainConfig(), on_step=None):
    device = next(model.parameters()).device
    model.noise_schedule = schedule = NoiseSchedule(config.max_steps, device)
    data = trainset.to(device)
    t.manual_seed(config.seed)
    optimiser = t.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    losses, start = [], time.perf_counter()
    for _ in range(config.epochs):
        order = t.randperm(len(data))
        for first in range(0, len(data), config.batch_size):
            images = data[order[first : first + config.batch_size].to(device)]
            num_steps, noise, noised = noise_img(images, schedule)
            loss = nn.MSELoss()(model(noised, num_steps), noise)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            if on_step is not None:
                on_step(len(losses), loss.item())
            if config.time_budget_s is not None and time.perf_counter() - start > config.time_budget_s:
                return TrainLog(losses, time.perf_counter() - start)
    return TrainLog(losses, time.perf_counter() - start)


@t.inference_mode()
def sample(model, n_samples, return_all_steps=False, seed=None):
    schedule = model.noise_schedule
    device = next(model.parameters()).device
    generator = t.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int(t.randint(0, 2**31, ())))
    x = t.randn((n_samples, *model.img_shape), generator=generator, device=device)
    xs = [x]
    for step in range(len(schedule), 0, -1):
        steps = repeat(t.tensor(step, device=device), " -> b", b=n_samples)
        eps = model(x, steps)
        z = t.randn(x.shape, generator=generator, device=device) * (1.0 if step > 1 else 0.0)
        x = (x - schedule.beta(step) / (1 - schedule.alpha_bar(step)).sqrt() * eps) / schedule.alpha(step).sqrt()
        x = x + schedule.beta(step).sqrt() * z
        xs.append(x)
    return xs if return_all_steps else xs[-1]
