"""Plain indexing instead of einops ([:, None, None, None]), betas from an arange formula, explicit
fc1/fc2/fc3 layers with F.relu, a DataLoader for the batches, and t.randn with shapes."""

import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from w3d4_part1_diffusion_training_solution import DiffusionModel, TrainConfig, TrainLog


def normalize_img(img):
    return img.mul(2.0).sub(1.0)


def denormalize_img(img):
    return img.add(1.0).div(2.0)


def linear_schedule(max_steps, min_noise=0.0001, max_noise=0.02):
    if max_steps == 1:
        return torch.tensor([min_noise])
    step = (max_noise - min_noise) / (max_steps - 1)
    return min_noise + step * torch.arange(max_steps, dtype=torch.float32)


def q_eq2(x, num_steps, betas):
    for i in range(num_steps):
        noise = torch.randn(x.shape, device=x.device, dtype=x.dtype)
        x = torch.sqrt(1 - betas[i]) * x + torch.sqrt(betas[i]) * noise
    return x


def q_eq4(x, num_steps, betas):
    alpha_bar = 1.0
    for i in range(num_steps):
        alpha_bar = alpha_bar * (1 - betas[i])
    return x * alpha_bar**0.5 + torch.randn(x.shape, device=x.device) * (1 - alpha_bar) ** 0.5


class NoiseSchedule(nn.Module):
    def __init__(self, max_steps, device=None):
        super().__init__()
        self.max_steps = max_steps
        betas = linear_schedule(max_steps).to(device)
        alpha_bars = torch.ones_like(betas)
        running = 1.0
        for i in range(max_steps):
            running = running * (1 - betas[i].item())
            alpha_bars[i] = running
        self.register_buffer("betas", betas)
        self.register_buffer("alphas", 1 - betas)
        self.register_buffer("alpha_bars", alpha_bars)

    def _lookup(self, table, num_steps):
        if not isinstance(num_steps, torch.Tensor):
            num_steps = torch.tensor(num_steps)
        num_steps = num_steps.to(table.device)
        if num_steps.min() < 1 or num_steps.max() > self.max_steps:
            raise IndexError(f"num_steps must lie in 1..{self.max_steps}, got {num_steps.tolist()}")
        return table[num_steps - 1]

    def beta(self, num_steps):
        return self._lookup(self.betas, num_steps)

    def alpha(self, num_steps):
        return self._lookup(self.alphas, num_steps)

    def alpha_bar(self, num_steps):
        return self._lookup(self.alpha_bars, num_steps)

    def __len__(self):
        return self.max_steps


def noise_img(img, noise_schedule, max_steps=None):
    if max_steps is None:
        max_steps = len(noise_schedule)
    num_steps = torch.randint(1, max_steps + 1, size=(len(img),), device=img.device, dtype=torch.int64)
    noise = torch.randn(img.shape, device=img.device)
    alpha_bar = noise_schedule.alpha_bar(num_steps)[:, None, None, None]
    return num_steps, noise, alpha_bar**0.5 * img + (1 - alpha_bar) ** 0.5 * noise


def reconstruct(noisy_img, noise, num_steps, noise_schedule):
    alpha_bar = noise_schedule.alpha_bar(num_steps)[:, None, None, None]
    return (noisy_img - torch.sqrt(1 - alpha_bar) * noise) / torch.sqrt(alpha_bar)


class TinyDiffuser(DiffusionModel):
    def __init__(self, img_shape, hidden_size=256, max_steps=1000):
        super().__init__()
        self.img_shape = tuple(img_shape)
        self.noise_schedule = None
        self.max_steps = max_steps
        size = img_shape[0] * img_shape[1] * img_shape[2]
        self.fc1 = nn.Linear(size + 1, hidden_size)
        self.fc2 = nn.Linear(hidden_size, hidden_size)
        self.fc3 = nn.Linear(hidden_size, size)

    def forward(self, images, num_steps):
        x = torch.cat([images.reshape(len(images), -1), (num_steps / self.max_steps)[:, None]], dim=1)
        x = self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))
        return x.reshape(images.shape)


def train(model, trainset, config=TrainConfig(), on_step=None):
    device = next(model.parameters()).device
    model.noise_schedule = NoiseSchedule(config.max_steps).to(device)
    torch.manual_seed(config.seed)
    loader = DataLoader(TensorDataset(trainset.to(device)), batch_size=config.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(config.seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    losses = []
    begin = time.perf_counter()
    for epoch in range(config.epochs):
        for (images,) in loader:
            num_steps, noise, noised = noise_img(images, model.noise_schedule)
            loss = F.mse_loss(model(noised, num_steps), noise)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if on_step:
                on_step(len(losses), losses[-1])
            if config.time_budget_s is not None and time.perf_counter() - begin > config.time_budget_s:
                return TrainLog(losses, time.perf_counter() - begin)
    return TrainLog(losses, time.perf_counter() - begin)


@torch.no_grad()
def sample(model, n_samples, return_all_steps=False, seed=None):
    schedule = model.noise_schedule
    device = next(model.parameters()).device
    gen = torch.Generator(device=device)
    if seed is not None:
        gen.manual_seed(seed)
    else:
        gen.seed()
    x = torch.randn((n_samples,) + tuple(model.img_shape), generator=gen, device=device)
    history = [x]
    for step in reversed(range(1, len(schedule) + 1)):
        steps = torch.full((n_samples,), step, dtype=torch.long, device=device)
        eps = model(x, steps)
        x = (x - schedule.beta(step) / torch.sqrt(1 - schedule.alpha_bar(step)) * eps) / torch.sqrt(schedule.alpha(step))
        if step > 1:
            x = x + torch.sqrt(schedule.beta(step)) * torch.randn(x.shape, generator=gen, device=device)
        history.append(x)
    return history if return_all_steps else x
