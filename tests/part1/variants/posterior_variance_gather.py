"""The sampler uses the posterior variance beta_tilde_t (the paper's other choice of sigma_t^2);
lookups with torch.gather; alpha_bar by exp(cumsum(log(alphas))); q_eq4 by exp(sum(log)); the
MLP's step input is the raw step divided by max_steps, concatenated first."""

import time

import torch
from torch import nn

from w3d4_part1_diffusion_training_solution import DiffusionModel, TrainConfig, TrainLog, _batches


def normalize_img(img):
    return (img - 0.5) / 0.5


def denormalize_img(img):
    return img * 0.5 + 0.5


def linear_schedule(max_steps, min_noise=0.0001, max_noise=0.02):
    return torch.linspace(min_noise, max_noise, steps=max_steps)


def q_eq2(x, num_steps, betas):
    for n in range(1, num_steps + 1):
        beta = betas[n - 1]
        x = torch.sqrt(1.0 - beta) * x + torch.sqrt(beta) * torch.randn_like(x)
    return x


def q_eq4(x, num_steps, betas):
    alpha_bar = torch.exp(torch.log1p(-betas[:num_steps]).sum())
    return alpha_bar.sqrt() * x + (1 - alpha_bar).sqrt() * torch.randn_like(x)


class NoiseSchedule(nn.Module):
    def __init__(self, max_steps, device=None):
        super().__init__()
        self.max_steps = max_steps
        betas = linear_schedule(max_steps).to(device)
        alphas = 1 - betas
        self.register_buffer("betas", betas)
        self.register_buffer("alphas", alphas)
        self.register_buffer("alpha_bars", torch.exp(torch.cumsum(torch.log(alphas), dim=0)))

    def _lookup(self, table, num_steps):
        steps = torch.as_tensor(num_steps, device=table.device)
        if bool((steps < 1).any()) or bool((steps > self.max_steps).any()):
            raise IndexError(f"num_steps must lie in 1..{self.max_steps}, got {steps.tolist()}")
        flat = torch.gather(table, 0, (steps.long() - 1).reshape(-1))
        return flat.reshape(steps.shape)

    def beta(self, num_steps):
        return self._lookup(self.betas, num_steps)

    def alpha(self, num_steps):
        return self._lookup(self.alphas, num_steps)

    def alpha_bar(self, num_steps):
        return self._lookup(self.alpha_bars, num_steps)

    def __len__(self):
        return self.max_steps


def noise_img(img, noise_schedule, max_steps=None):
    n = img.shape[0]
    num_steps = torch.randint(low=1, high=(max_steps or noise_schedule.max_steps) + 1, size=(n,)).to(img.device)
    noise = torch.randn_like(img)
    ab = noise_schedule.alpha_bar(num_steps).reshape(n, 1, 1, 1)
    return num_steps, noise, torch.sqrt(ab) * img + torch.sqrt(1 - ab) * noise


def reconstruct(noisy_img, noise, num_steps, noise_schedule):
    ab = noise_schedule.alpha_bar(num_steps).reshape(-1, 1, 1, 1)
    return (noisy_img - torch.sqrt(1 - ab) * noise) * torch.rsqrt(ab)


class TinyDiffuser(DiffusionModel):
    def __init__(self, img_shape, hidden_size=256, max_steps=1000):
        super().__init__()
        self.img_shape = tuple(img_shape)
        self.noise_schedule = None
        self.max_steps = max_steps
        pixels = img_shape[0] * img_shape[1] * img_shape[2]
        self.body = nn.Sequential(nn.Linear(1 + pixels, hidden_size), nn.ReLU(),
                                  nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, pixels))

    def forward(self, images, num_steps):
        steps = (num_steps.float() / self.max_steps).view(-1, 1)
        return self.body(torch.cat([steps, images.flatten(1)], dim=1)).view(-1, *self.img_shape)


def train(model, trainset, config=TrainConfig(), on_step=None):
    device = next(model.parameters()).device
    schedule = NoiseSchedule(config.max_steps, device=device)
    model.noise_schedule = schedule
    data = trainset.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    losses = []
    start = time.perf_counter()
    model.train()
    for _ in range(config.epochs):
        for images in _batches(data, config.batch_size, generator):
            num_steps, noise, noised = noise_img(images, schedule)
            optimiser.zero_grad()
            loss = nn.functional.mse_loss(model(noised, num_steps), noise)
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            if on_step is not None:
                on_step(len(losses), losses[-1])
            if config.time_budget_s is not None and time.perf_counter() - start > config.time_budget_s:
                break
        else:
            continue
        break
    return TrainLog(losses, time.perf_counter() - start)


@torch.no_grad()
def sample(model, n_samples, return_all_steps=False, seed=None):
    schedule = model.noise_schedule
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    x = torch.randn(n_samples, *model.img_shape, device=device, generator=generator)
    everything = [x]
    for step in range(len(schedule), 0, -1):
        beta, alpha, alpha_bar = schedule.beta(step), schedule.alpha(step), schedule.alpha_bar(step)
        eps = model(x, torch.full((n_samples,), step, dtype=torch.int64, device=device))
        x = (x - beta / torch.sqrt(1 - alpha_bar) * eps) / torch.sqrt(alpha)
        if step > 1:
            variance = beta * (1 - schedule.alpha_bar(step - 1)) / (1 - alpha_bar)
            x = x + variance.sqrt() * torch.randn(x.shape, device=device, generator=generator)
        everything.append(x)
    return everything if return_all_steps else x
