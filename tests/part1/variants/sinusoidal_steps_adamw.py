"""The MLP embeds the step with sines and cosines instead of one scaled number, and uses SiLU;
the training loop draws its own steps and noise (no call to noise_img) and uses AdamW; the
sampler records the trajectory by stacking, and reaches the schedule through its public tables."""

import math
import time

import torch
from torch import nn

from w3d4_part1_diffusion_training_solution import DiffusionModel, TrainConfig, TrainLog, _batches


def normalize_img(img):
    return 2 * img - 1


def denormalize_img(img):
    return 0.5 * (img + 1)


def linear_schedule(max_steps, min_noise=0.0001, max_noise=0.02):
    fractions = torch.arange(max_steps) / max(max_steps - 1, 1)
    return torch.lerp(torch.tensor(min_noise), torch.tensor(max_noise), fractions)


def q_eq2(x, num_steps, betas):
    alphas = 1 - betas
    for step in range(num_steps):
        x = alphas[step].sqrt() * x + (1 - alphas[step]).sqrt() * torch.randn_like(x)
    return x


def q_eq4(x, num_steps, betas):
    alpha_bar = torch.prod(1 - betas[:num_steps])
    return torch.sqrt(alpha_bar) * x + torch.sqrt(1 - alpha_bar) * torch.randn_like(x)


class NoiseSchedule(nn.Module):
    def __init__(self, max_steps, device=None):
        super().__init__()
        self.max_steps = max_steps
        self.register_buffer("betas", linear_schedule(max_steps).to(device))
        self.register_buffer("alphas", 1 - self.betas)
        self.register_buffer("alpha_bars", self.alphas.cumprod(0))

    def _lookup(self, table, num_steps):
        steps = torch.as_tensor(num_steps, device=table.device)
        if steps.numel() and (steps.min().item() < 1 or steps.max().item() > self.max_steps):
            raise IndexError(f"num_steps must lie in 1..{self.max_steps}, got {steps.tolist()}")
        return table[steps - 1]

    def beta(self, num_steps):
        return self._lookup(self.betas, num_steps)

    def alpha(self, num_steps):
        return self._lookup(self.alphas, num_steps)

    def alpha_bar(self, num_steps):
        return self._lookup(self.alpha_bars, num_steps)

    def __len__(self):
        return self.max_steps


def noise_img(img, noise_schedule, max_steps=None):
    num_steps = torch.randint(1, (max_steps or len(noise_schedule)) + 1, img.shape[:1], device=img.device)
    noise = torch.randn_like(img)
    scale = noise_schedule.alpha_bar(num_steps).sqrt().view(-1, 1, 1, 1)
    return num_steps, noise, scale * img + (1 - scale**2).sqrt() * noise


def reconstruct(noisy_img, noise, num_steps, noise_schedule):
    scale = noise_schedule.alpha_bar(num_steps).sqrt().view(-1, 1, 1, 1)
    return (noisy_img - (1 - scale**2).sqrt() * noise) / scale


class TinyDiffuser(DiffusionModel):
    def __init__(self, img_shape, hidden_size=256, max_steps=1000):
        super().__init__()
        self.img_shape = tuple(img_shape)
        self.noise_schedule = None
        self.max_steps = max_steps
        self.n_freq = 8
        pixels = math.prod(img_shape)
        self.mlp = nn.Sequential(nn.Linear(pixels + 2 * self.n_freq, hidden_size), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, pixels))

    def forward(self, images, num_steps):
        freqs = torch.exp(-math.log(self.max_steps) * torch.arange(self.n_freq, device=images.device) / self.n_freq)
        angles = num_steps.float()[:, None] * freqs[None]
        features = torch.cat([images.flatten(1), angles.sin(), angles.cos()], dim=1)
        return self.mlp(features).unflatten(1, self.img_shape)


def train(model, trainset, config=TrainConfig(), on_step=None):
    device = next(model.parameters()).device
    schedule = NoiseSchedule(config.max_steps, device)
    model.noise_schedule = schedule
    data = trainset.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    losses, start = [], time.perf_counter()
    stop = False
    for _ in range(config.epochs):
        for clean in _batches(data, config.batch_size, generator):
            steps = torch.randint(1, config.max_steps + 1, (len(clean),), device=device)
            noise = torch.randn_like(clean)
            ab = schedule.alpha_bars[steps - 1].view(-1, 1, 1, 1)
            noised = ab.sqrt() * clean + (1 - ab).sqrt() * noise
            loss = (model(noised, steps) - noise).pow(2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            if on_step is not None:
                on_step(len(losses), losses[-1])
            stop = config.time_budget_s is not None and time.perf_counter() - start > config.time_budget_s
            if stop:
                break
        if stop:
            break
    return TrainLog(losses=losses, seconds=time.perf_counter() - start)


@torch.inference_mode()
def sample(model, n_samples, return_all_steps=False, seed=None):
    schedule = model.noise_schedule
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    x = torch.randn((n_samples, *model.img_shape), device=device, generator=generator)
    trajectory = [x]
    for step in range(schedule.max_steps, 0, -1):
        i = step - 1
        beta, alpha, alpha_bar = schedule.betas[i], schedule.alphas[i], schedule.alpha_bars[i]
        eps = model(x, torch.full((n_samples,), step, device=device))
        x = (x - (beta / (1 - alpha_bar).sqrt()) * eps) / alpha.sqrt()
        if i > 0:
            x += beta.sqrt() * torch.randn(x.shape, device=device, generator=generator)
        trajectory.append(x)
    stacked = torch.stack(trajectory)
    return list(stacked.unbind(0)) if return_all_steps else stacked[-1]
