"""An MLP held as raw nn.Parameter matrices used with F.linear and GELU; a sampler that draws each
step with torch.normal(mean, std, generator=...); noise for noise_img drawn as one big randn and
reshaped; the schedule tables computed as Python lists."""

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from w3d4_part1_diffusion_training_solution import DiffusionModel, TrainConfig, TrainLog, _batches


def normalize_img(img):
    return torch.addcmul(-torch.ones_like(img), img, torch.full_like(img, 2.0))


def denormalize_img(img):
    return torch.clamp_min(img, -math.inf).add(1).mul(0.5)


def linear_schedule(max_steps, min_noise=0.0001, max_noise=0.02):
    if max_steps == 1:
        return torch.tensor([float(min_noise)])
    return torch.tensor([min_noise + (max_noise - min_noise) * i / (max_steps - 1) for i in range(max_steps)])


def q_eq2(x, num_steps, betas):
    for beta in betas.tolist()[:num_steps]:
        x = math.sqrt(1 - beta) * x + math.sqrt(beta) * torch.randn_like(x)
    return x


def q_eq4(x, num_steps, betas):
    alpha_bar = math.prod(1 - b for b in betas.tolist()[:num_steps])
    return math.sqrt(alpha_bar) * x + math.sqrt(1 - alpha_bar) * torch.randn_like(x)


class NoiseSchedule(nn.Module):
    def __init__(self, max_steps, device=None):
        super().__init__()
        self.max_steps = max_steps
        betas = linear_schedule(max_steps).tolist()
        alpha_bars, running = [], 1.0
        for beta in betas:
            running *= 1 - beta
            alpha_bars.append(running)
        self.register_buffer("betas", torch.tensor(betas, device=device))
        self.register_buffer("alphas", torch.tensor([1 - b for b in betas], device=device))
        self.register_buffer("alpha_bars", torch.tensor(alpha_bars, device=device))

    def _lookup(self, table, num_steps):
        steps = torch.as_tensor(num_steps, device=table.device)
        if steps.lt(1).any() or steps.gt(self.max_steps).any():
            raise IndexError(f"num_steps must lie in 1..{self.max_steps}, got {steps.tolist()}")
        return table.index_select(0, steps.reshape(-1).long() - 1).reshape(steps.shape)

    def beta(self, num_steps):
        return self._lookup(self.betas, num_steps)

    def alpha(self, num_steps):
        return self._lookup(self.alphas, num_steps)

    def alpha_bar(self, num_steps):
        return self._lookup(self.alpha_bars, num_steps)

    def __len__(self):
        return self.max_steps


def noise_img(img, noise_schedule, max_steps=None):
    max_steps = max_steps if max_steps is not None else len(noise_schedule)
    noise = torch.randn(img.numel(), device=img.device).reshape(img.shape)
    num_steps = torch.randint(1, max_steps + 1, (img.shape[0],), device=img.device)
    ab = noise_schedule.alpha_bar(num_steps)
    return num_steps, noise, torch.einsum("b,bchw->bchw", ab.sqrt(), img) + torch.einsum("b,bchw->bchw", (1 - ab).sqrt(), noise)


def reconstruct(noisy_img, noise, num_steps, noise_schedule):
    ab = noise_schedule.alpha_bar(num_steps)
    return torch.einsum("b,bchw->bchw", 1 / ab.sqrt(), noisy_img - torch.einsum("b,bchw->bchw", (1 - ab).sqrt(), noise))


class TinyDiffuser(DiffusionModel):
    def __init__(self, img_shape, hidden_size=256, max_steps=1000):
        super().__init__()
        self.img_shape = tuple(img_shape)
        self.noise_schedule = None
        self.max_steps = max_steps
        sizes = [math.prod(img_shape) + 1, hidden_size, hidden_size, math.prod(img_shape)]
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(o, i) / math.sqrt(i)) for i, o in zip(sizes, sizes[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(o)) for o in sizes[1:])

    def forward(self, images, num_steps):
        h = torch.cat([images.reshape(images.shape[0], -1), num_steps[:, None].float() / self.max_steps], dim=1)
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = F.linear(h, w, b)
            if k < len(self.weights) - 1:
                h = F.gelu(h)
        return h.reshape(images.shape)


def train(model, trainset, config=TrainConfig(), on_step=None):
    device = next(model.parameters()).device
    model.noise_schedule = NoiseSchedule(config.max_steps, device)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    log = TrainLog([], 0.0)
    start = time.monotonic()
    for _ in range(config.epochs):
        for images in _batches(trainset.to(device), config.batch_size, generator):
            num_steps, noise, noised = noise_img(images, model.noise_schedule)
            optimiser.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(noised, num_steps), noise, reduction="mean")
            loss.backward()
            optimiser.step()
            log.losses.append(loss.item())
            log.seconds = time.monotonic() - start
            if on_step:
                on_step(len(log.losses), log.losses[-1])
            if config.time_budget_s is not None and log.seconds > config.time_budget_s:
                return log
    log.seconds = time.monotonic() - start
    return log


@torch.inference_mode()
def sample(model, n_samples, return_all_steps=False, seed=None):
    schedule = model.noise_schedule
    device = next(model.parameters()).device
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    shape = (n_samples, *model.img_shape)
    x = torch.normal(torch.zeros(shape, device=device), torch.ones(shape, device=device), generator=generator)
    trace = [x]
    for step in range(len(schedule), 0, -1):
        eps = model(x, torch.full((n_samples,), step, device=device, dtype=torch.long))
        mean = (x - schedule.beta(step) / (1 - schedule.alpha_bar(step)).sqrt() * eps) / schedule.alpha(step).sqrt()
        if step == 1:
            x = mean
        else:
            x = torch.normal(mean, schedule.beta(step).sqrt().expand(shape), generator=generator)
        trace.append(x)
    return trace if return_all_steps else trace[-1]
