"""Everything computed in float64 and cast back; all the sampler's noise drawn in one call up front
(including a draw for the last step that is never used); q_eq2 draws its noise for all steps at once;
nn.Flatten / nn.Unflatten in the MLP; the loss written out as ((a - b) ** 2).mean()."""

import time

import torch
from torch import nn

from w3d4_part1_diffusion_training_solution import DiffusionModel, TrainConfig, TrainLog, _batches


def normalize_img(img):
    return (img.double() * 2 - 1).to(img.dtype)


def denormalize_img(img):
    return (img.double() * 0.5 + 0.5).to(img.dtype)


def linear_schedule(max_steps, min_noise=1e-4, max_noise=0.02):
    return torch.linspace(min_noise, max_noise, max_steps, dtype=torch.float64).float()


def q_eq2(x, num_steps, betas):
    b = betas[:num_steps].double()
    noises = torch.randn((num_steps, *x.shape), dtype=torch.float64, device=x.device)
    out = x.double()
    for k in range(num_steps):
        out = (1 - b[k]).sqrt() * out + b[k].sqrt() * noises[k]
    return out.to(x.dtype)


def q_eq4(x, num_steps, betas):
    alpha_bar = torch.cumprod(1 - betas.double(), dim=0)[num_steps - 1]
    out = alpha_bar.sqrt() * x.double() + (1 - alpha_bar).sqrt() * torch.randn(x.shape, dtype=torch.float64, device=x.device)
    return out.to(x.dtype)


class NoiseSchedule(nn.Module):
    def __init__(self, max_steps, device=None):
        super().__init__()
        self.max_steps = max_steps
        betas = torch.linspace(1e-4, 0.02, max_steps, dtype=torch.float64)
        self.register_buffer("betas", betas.float().to(device))
        self.register_buffer("alphas", (1 - betas).float().to(device))
        self.register_buffer("alpha_bars", torch.cumprod(1 - betas, 0).float().to(device))

    def _lookup(self, table, num_steps):
        steps = torch.as_tensor(num_steps, device=table.device).long()
        bad = (steps < 1) | (steps > self.max_steps)
        if bad.any():
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
    top = max_steps or len(noise_schedule)
    num_steps = torch.randint(1, top + 1, (img.shape[0],), device=img.device)
    noise = torch.randn_like(img)
    ab = noise_schedule.alpha_bar(num_steps).double().view(-1, 1, 1, 1)
    noised = ab.sqrt() * img.double() + (1 - ab).sqrt() * noise.double()
    return num_steps, noise, noised.to(img.dtype)


def reconstruct(noisy_img, noise, num_steps, noise_schedule):
    ab = noise_schedule.alpha_bar(num_steps).double().view(-1, 1, 1, 1)
    return ((noisy_img.double() - (1 - ab).sqrt() * noise.double()) / ab.sqrt()).to(noisy_img.dtype)


class TinyDiffuser(DiffusionModel):
    def __init__(self, img_shape, hidden_size=256, max_steps=1000):
        super().__init__()
        self.img_shape = tuple(img_shape)
        self.noise_schedule = None
        self.max_steps = max_steps
        n = int(torch.tensor(img_shape).prod())
        self.flatten, self.unflatten = nn.Flatten(), nn.Unflatten(1, tuple(img_shape))
        self.mlp = nn.Sequential(nn.Linear(n + 1, hidden_size), nn.ReLU(), nn.Linear(hidden_size, hidden_size),
                                 nn.ReLU(), nn.Linear(hidden_size, n))

    def forward(self, images, num_steps):
        scaled = num_steps.to(images.dtype).unsqueeze(1) / self.max_steps
        return self.unflatten(self.mlp(torch.cat([self.flatten(images), scaled], 1)))


def train(model, trainset, config=TrainConfig(), on_step=None):
    device = next(model.parameters()).device
    schedule = NoiseSchedule(config.max_steps, device)
    model.noise_schedule = schedule
    data = trainset.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    losses, start = [], time.time()
    for _ in range(config.epochs):
        for images in _batches(data, config.batch_size, generator):
            num_steps, noise, noised = noise_img(images, schedule)
            loss = ((model(noised, num_steps) - noise) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(len(losses), losses[-1])
            if config.time_budget_s is not None and time.time() - start > config.time_budget_s:
                return TrainLog(losses, time.time() - start)
    return TrainLog(losses, time.time() - start)


@torch.inference_mode()
def sample(model, n_samples, return_all_steps=False, seed=None):
    schedule = model.noise_schedule
    device = next(model.parameters()).device
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    T = len(schedule)
    noise = torch.randn((T + 1, n_samples, *model.img_shape), generator=generator, device=device)
    x = noise[0]
    out = [x]
    for i, step in enumerate(range(T, 0, -1)):
        b, a, ab = (v.double() for v in (schedule.beta(step), schedule.alpha(step), schedule.alpha_bar(step)))
        eps = model(x, torch.full((n_samples,), step, device=device, dtype=torch.long)).double()
        mean = (x.double() - b / (1 - ab).sqrt() * eps) / a.sqrt()
        z = noise[i + 1].double() if step > 1 else torch.zeros_like(mean)
        x = (mean + b.sqrt() * z).float()
        out.append(x)
    return out if return_all_steps else x
