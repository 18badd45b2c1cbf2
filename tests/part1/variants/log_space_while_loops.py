"""While loops instead of for loops; the schedule and q_eq4 in log space (exp of a cumulative sum
of log(1 - beta)); noise_img draws the steps with torch.multinomial over uniform weights; the
sampler builds the num_steps tensor with new_full and multiplies by rsqrt."""

import time

import torch
from torch import nn

from w3d4_part1_diffusion_training_solution import DiffusionModel, TrainConfig, TrainLog, _batches


def normalize_img(img):
    return img + img - 1


def denormalize_img(img):
    return (img + 1) * 0.5


def linear_schedule(max_steps, min_noise=0.0001, max_noise=0.02):
    return torch.linspace(float(min_noise), float(max_noise), int(max_steps), dtype=torch.float32)


def q_eq2(x, num_steps, betas):
    step = 0
    while step < num_steps:
        x = torch.sqrt(1 - betas[step]) * x + torch.sqrt(betas[step]) * torch.randn(*x.shape, device=x.device)
        step += 1
    return x


def q_eq4(x, num_steps, betas):
    log_alpha_bar = torch.cumsum(torch.log(1 - betas.double()), 0)[num_steps - 1]
    alpha_bar = log_alpha_bar.exp().float()
    return alpha_bar.sqrt() * x + (-torch.expm1(log_alpha_bar)).sqrt().float() * torch.randn_like(x)


class NoiseSchedule(nn.Module):
    def __init__(self, max_steps, device=None):
        super().__init__()
        self.max_steps = max_steps
        betas = linear_schedule(max_steps)
        self.register_buffer("betas", betas.to(device))
        self.register_buffer("alphas", (1 - betas).to(device))
        self.register_buffer("alpha_bars", torch.log1p(-betas.double()).cumsum(0).exp().float().to(device))

    def _lookup(self, table, num_steps):
        steps = torch.as_tensor(num_steps).to(table.device)
        if int(steps.min()) < 1 or int(steps.max()) > self.max_steps:
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
    top = len(noise_schedule) if max_steps is None else max_steps
    weights = torch.ones(top, device=img.device)
    num_steps = torch.multinomial(weights, img.shape[0], replacement=True) + 1
    noise = torch.randn_like(img)
    ab = noise_schedule.alpha_bar(num_steps)[:, None, None, None]
    return num_steps, noise, torch.sqrt(ab) * img + torch.sqrt(1 - ab) * noise


def reconstruct(noisy_img, noise, num_steps, noise_schedule):
    ab = noise_schedule.alpha_bar(num_steps)[:, None, None, None]
    return torch.rsqrt(ab) * (noisy_img - torch.sqrt(1 - ab) * noise)


class TinyDiffuser(DiffusionModel):
    def __init__(self, img_shape, hidden_size=256, max_steps=1000):
        super().__init__()
        self.img_shape = tuple(img_shape)
        self.noise_schedule = None
        self.max_steps = max_steps
        c, h, w = img_shape
        self.hidden = nn.Sequential(nn.Linear(c * h * w + 1, hidden_size), nn.LeakyReLU(0.01),
                                    nn.Linear(hidden_size, hidden_size), nn.LeakyReLU(0.01))
        self.out = nn.Linear(hidden_size, c * h * w)

    def forward(self, images, num_steps):
        b = images.shape[0]
        x = torch.cat((images.view(b, -1), num_steps.view(b, 1).float().div(self.max_steps)), 1)
        return self.out(self.hidden(x)).view(b, *self.img_shape)


def train(model, trainset, config=TrainConfig(), on_step=None):
    device = next(model.parameters()).device
    model.noise_schedule = NoiseSchedule(config.max_steps, device)
    data = trainset.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    losses, start, epoch = [], time.perf_counter(), 0
    over_budget = lambda: config.time_budget_s is not None and time.perf_counter() - start > config.time_budget_s
    while epoch < config.epochs and not (losses and over_budget()):
        batches = iter(_batches(data, config.batch_size, generator))
        while (images := next(batches, None)) is not None:
            num_steps, noise, noised = noise_img(images, model.noise_schedule)
            loss = torch.nn.functional.mse_loss(model(noised, num_steps), noise)
            model.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            if on_step is not None:
                on_step(len(losses), losses[-1])
            if over_budget():
                break
        epoch += 1
    return TrainLog(losses, time.perf_counter() - start)


@torch.inference_mode()
def sample(model, n_samples, return_all_steps=False, seed=None):
    schedule = model.noise_schedule
    device = next(model.parameters()).device
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    x = torch.randn((n_samples, *model.img_shape), generator=generator, device=device)
    steps_seen, step = [x], len(schedule)
    while step >= 1:
        beta, alpha, alpha_bar = schedule.beta(step), schedule.alpha(step), schedule.alpha_bar(step)
        eps = model(x, x.new_full((n_samples,), step, dtype=torch.long))
        x = torch.rsqrt(alpha) * (x - beta * torch.rsqrt(1 - alpha_bar) * eps)
        if step > 1:
            x = x + beta.sqrt() * torch.randn(x.shape, generator=generator, device=device)
        steps_seen.append(x)
        step -= 1
    return steps_seen if return_all_steps else x
