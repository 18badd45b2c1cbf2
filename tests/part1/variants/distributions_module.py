"""torch.distributions.Normal for every draw (with rsample / sample shapes), the schedule's tables
computed once in float64 and indexed with torch.take, and a sampler that keeps the whole trajectory
in a preallocated tensor and posterior variance computed with a padded alpha_bar table."""

import time

import torch
from torch import nn
from torch.distributions import Normal

from w3d4_part1_diffusion_training_solution import DiffusionModel, TrainConfig, TrainLog, _batches


def normalize_img(img):
    return torch.sub(torch.mul(img, 2), 1)


def denormalize_img(img):
    return torch.div(torch.add(img, 1), 2)


def linear_schedule(max_steps, min_noise=0.0001, max_noise=0.02):
    return torch.linspace(min_noise, max_noise, max_steps, dtype=torch.float64).to(torch.float32)


def q_eq2(x, num_steps, betas):
    for beta in betas[:num_steps]:
        x = Normal((1 - beta).sqrt() * x, beta.sqrt()).sample()
    return x


def q_eq4(x, num_steps, betas):
    alpha_bar = (1 - betas[:num_steps]).prod()
    return Normal(alpha_bar.sqrt() * x, (1 - alpha_bar).sqrt()).sample()


class NoiseSchedule(nn.Module):
    def __init__(self, max_steps, device=None):
        super().__init__()
        self.max_steps = max_steps
        betas = torch.linspace(1e-4, 2e-2, max_steps, dtype=torch.float64, device=device)
        for name, table in (("betas", betas), ("alphas", 1 - betas), ("alpha_bars", (1 - betas).cumprod(0))):
            self.register_buffer(name, table.float())

    def _lookup(self, table, num_steps):
        steps = torch.as_tensor(num_steps, device=table.device).long()
        if ((steps - 1) % self.max_steps != steps - 1).any():
            raise IndexError(f"num_steps must lie in 1..{self.max_steps}, got {steps.tolist()}")
        return torch.take(table, steps - 1)

    def beta(self, num_steps):
        return self._lookup(self.betas, num_steps)

    def alpha(self, num_steps):
        return self._lookup(self.alphas, num_steps)

    def alpha_bar(self, num_steps):
        return self._lookup(self.alpha_bars, num_steps)

    def __len__(self):
        return self.max_steps


def noise_img(img, noise_schedule, max_steps=None):
    limit = len(noise_schedule) if max_steps is None else max_steps
    num_steps = torch.randint(1, limit + 1, (len(img),), device=img.device)
    noise = Normal(torch.zeros((), device=img.device), torch.ones((), device=img.device)).sample(img.shape)
    ab = noise_schedule.alpha_bar(num_steps).reshape(-1, *([1] * (img.ndim - 1)))
    return num_steps, noise, ab.sqrt() * img + (1 - ab).sqrt() * noise


def reconstruct(noisy_img, noise, num_steps, noise_schedule):
    ab = noise_schedule.alpha_bar(num_steps).reshape(-1, *([1] * (noisy_img.ndim - 1)))
    return (noisy_img - (1 - ab).sqrt() * noise) / ab.sqrt()


class TinyDiffuser(DiffusionModel):
    def __init__(self, img_shape, hidden_size=256, max_steps=1000):
        super().__init__()
        self.img_shape = tuple(img_shape)
        self.noise_schedule = None
        self.max_steps = max_steps
        pixels = torch.Size(img_shape).numel()
        self.image_in = nn.Linear(pixels, hidden_size)
        self.step_in = nn.Linear(1, hidden_size, bias=False)
        self.rest = nn.Sequential(nn.ReLU(), nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, pixels))

    def forward(self, images, num_steps):
        # a Linear on [image, step] is the sum of a Linear on each part
        h = self.image_in(images.flatten(1)) + self.step_in(num_steps.float().unsqueeze(-1) / self.max_steps)
        return self.rest(h).reshape(-1, *self.img_shape)


def train(model, trainset, config=TrainConfig(), on_step=None):
    device = next(model.parameters()).device
    schedule = NoiseSchedule(config.max_steps, device)
    model.noise_schedule = schedule
    data = trainset.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), config.lr)
    criterion = nn.MSELoss()
    losses, start = [], time.perf_counter()
    for epoch in range(config.epochs):
        for images in _batches(data, config.batch_size, generator):
            num_steps, noise, noised = noise_img(images, schedule)
            optimiser.zero_grad()
            loss = criterion(model(noised, num_steps), noise)
            loss.backward()
            optimiser.step()
            losses.append(loss.detach().cpu().item())
            if on_step is not None:
                on_step(len(losses), losses[-1])
            if config.time_budget_s is not None and time.perf_counter() - start > config.time_budget_s:
                return TrainLog(losses, time.perf_counter() - start)
    return TrainLog(losses, time.perf_counter() - start)


@torch.no_grad()
def sample(model, n_samples, return_all_steps=False, seed=None):
    schedule = model.noise_schedule
    T = len(schedule)
    device = next(model.parameters()).device
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    trajectory = torch.empty((T + 1, n_samples, *model.img_shape), device=device)
    trajectory[0] = torch.randn(trajectory.shape[1:], generator=generator, device=device)
    padded = torch.cat([torch.ones(1, device=device), schedule.alpha_bars])  # alpha_bar_0 = 1
    for i, step in enumerate(range(T, 0, -1)):
        x = trajectory[i]
        beta, alpha, ab = schedule.betas[step - 1], schedule.alphas[step - 1], padded[step]
        eps = model(x, torch.full((n_samples,), step, dtype=torch.long, device=device))
        mean = (x - beta / (1 - ab).sqrt() * eps) / alpha.sqrt()
        posterior = beta * (1 - padded[step - 1]) / (1 - ab)
        trajectory[i + 1] = mean + posterior.sqrt() * torch.randn(x.shape, generator=generator, device=device)
    return list(trajectory) if return_all_steps else trajectory[-1].clone()
