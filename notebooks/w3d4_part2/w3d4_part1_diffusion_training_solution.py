# Generated from solutions/w3d4_part1_diffusion_training_solution.py by `python -m grader build`: edit that file, not this one.
# Generated from solutions/w3d4_part1_diffusion_solution.py by `python -m grader build`: edit that file, not this one.
"""W3D4 part 1: the definitions of its lesson, for the lessons that build on it.

Every code cell of solutions/w3d4_part1_diffusion_solution.py except its tests and demos.
"""

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Union

import torch as t
from einops import rearrange, repeat
from torch import nn

MAIN = __name__ == "__main__"


def gradient_images(n_images: int, img_size: tuple[int, int, int]) -> t.Tensor:
    """n_images random colour gradients of img_size = (channels, height, width), values in [0, 1].
    Returns: (n_images, channels, height, width)"""
    channels, height, width = img_size
    start, end = t.rand(n_images, channels, 1, 1), t.rand(n_images, channels, 1, 1)
    angle = 2 * math.pi * t.rand(n_images, 1, 1, 1)
    rows = repeat(t.linspace(-1, 1, height), "h -> 1 1 h w", w=width)
    cols = repeat(t.linspace(-1, 1, width), "w -> 1 1 h w", h=height)
    # position along the gradient's direction, rescaled to 0..1 over the image
    position = (t.cos(angle) * cols + t.sin(angle) * rows) / (t.cos(angle).abs() + t.sin(angle).abs())
    return start + (end - start) * (position + 1) / 2


def show_images(images: t.Tensor, title: str = "", ncols: int = 8):
    """Plot a batch (batch, channels, height, width) with values in [-1, 1] as a grid."""
    import matplotlib.pyplot as plt

    nrows = max(1, math.ceil(len(images) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 1.2, nrows * 1.2), squeeze=False)
    pixels = ((images.detach().cpu().clamp(-1, 1) + 1) / 2).float()
    for ax in axes.flat:
        ax.axis("off")
    for ax, img in zip(axes.flat, pixels):
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(rearrange(img, "c h w -> h w c"))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def normalize_img(img: t.Tensor) -> t.Tensor:
    """Pixel values in [0, 1] -> [-1, 1]. img: any shape; returns the same shape."""
    return img * 2 - 1


def denormalize_img(img: t.Tensor) -> t.Tensor:
    """Pixel values in [-1, 1] -> [0, 1], the inverse of normalize_img."""
    return (img + 1) / 2


BETA_START, BETA_END = 1e-4, 0.02  # DDPM's schedule
Device = Union[t.device, str]


def linear_schedule(max_steps: int, min_noise: float = BETA_START, max_noise: float = BETA_END) -> t.Tensor:
    """The betas of DDPM's linear schedule. Returns (max_steps,): betas[t - 1] is beta_t."""
    return t.linspace(min_noise, max_noise, max_steps)


def q_eq2(x: t.Tensor, num_steps: int, betas: t.Tensor) -> t.Tensor:
    """Noise x step by step with equation 2. x: any shape; betas: (at least num_steps,).
    Returns x after num_steps steps, same shape as x."""
    for beta in betas[:num_steps]:
        x = (1 - beta).sqrt() * x + beta.sqrt() * t.randn_like(x)
    return x


def q_eq4(x: t.Tensor, num_steps: int, betas: t.Tensor) -> t.Tensor:
    """Noise x by num_steps steps at once with equation 4. x: any shape; betas: (at least num_steps,).
    Returns a tensor of the same shape as x."""
    alpha_bar = t.prod(1 - betas[:num_steps])
    return alpha_bar.sqrt() * x + (1 - alpha_bar).sqrt() * t.randn_like(x)


class NoiseSchedule(nn.Module):
    """The linear variance schedule of DDPM: betas from 1e-4 to 0.02 over `max_steps` steps.

    The tables are buffers, so `.to(device)` moves them along with a model. Index them with the
    number of noise steps minus one: step 1 is the first noising step.
    """

    betas: t.Tensor
    alphas: t.Tensor
    alpha_bars: t.Tensor

    def __init__(self, max_steps: int, device: Optional[Device] = None) -> None:
        super().__init__()
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.max_steps = max_steps
        betas = linear_schedule(max_steps, BETA_START, BETA_END).to(device)
        alphas = 1.0 - betas
        self.register_buffer("betas", betas)
        self.register_buffer("alphas", alphas)
        self.register_buffer("alpha_bars", t.cumprod(alphas, dim=0))

    def _lookup(self, table: t.Tensor, num_steps: Union[int, t.Tensor]) -> t.Tensor:
        """table: (max_steps,); num_steps: an int or a tensor of ints. Returns table entries, shaped like num_steps."""
        steps = t.as_tensor(num_steps, device=table.device)
        if ((steps < 1) | (steps > self.max_steps)).any():
            raise IndexError(f"num_steps must lie in 1..{self.max_steps}, got {steps.tolist()}")
        return table[steps.long() - 1]

    def beta(self, num_steps: Union[int, t.Tensor]) -> t.Tensor:
        return self._lookup(self.betas, num_steps)

    def alpha(self, num_steps: Union[int, t.Tensor]) -> t.Tensor:
        return self._lookup(self.alphas, num_steps)

    def alpha_bar(self, num_steps: Union[int, t.Tensor]) -> t.Tensor:
        return self._lookup(self.alpha_bars, num_steps)

    def __len__(self) -> int:
        return self.max_steps

    def extra_repr(self) -> str:
        return f"max_steps={self.max_steps}, betas=linear({BETA_START}, {BETA_END})"


def _per_image(values: t.Tensor) -> t.Tensor:
    """(batch,) -> (batch, 1, 1, 1), to broadcast one number per image over its pixels."""
    return rearrange(values, "b -> b 1 1 1")


def noise_img(
    img: t.Tensor, noise_schedule: NoiseSchedule, max_steps: Optional[int] = None
) -> tuple[t.Tensor, t.Tensor, t.Tensor]:
    """Jump each image straight to a random step of the forward process.
    img: shape (batch, channels, height, width), pixel values in [-1, 1]
    max_steps: draw steps from 1..max_steps (default: the whole schedule)
    Returns (num_steps, noise, noised): num_steps (batch,) int64, noise and noised like img.
    """
    max_steps = len(noise_schedule) if max_steps is None else max_steps
    num_steps = t.randint(1, max_steps + 1, (img.shape[0],), device=img.device)
    noise = t.randn_like(img)
    alpha_bar = _per_image(noise_schedule.alpha_bar(num_steps))
    noised = alpha_bar.sqrt() * img + (1 - alpha_bar).sqrt() * noise
    return num_steps, noise, noised


def reconstruct(
    noisy_img: t.Tensor, noise: t.Tensor, num_steps: t.Tensor, noise_schedule: NoiseSchedule
) -> t.Tensor:
    """Invert `noise_img` given the noise (or a model's prediction of it).
    noisy_img, noise: shape (batch, channels, height, width); num_steps: shape (batch,)
    Returns the estimate of the clean image, same shape as noisy_img.
    """
    alpha_bar = _per_image(noise_schedule.alpha_bar(num_steps))
    return (noisy_img - (1 - alpha_bar).sqrt() * noise) / alpha_bar.sqrt()


class DiffusionModel(nn.Module, ABC):
    """A network that predicts the noise in a batch of noised images.

    Subclasses set `img_shape` (channels, height, width) and leave `noise_schedule` as None until
    training attaches the schedule the model was trained with (sampling needs the same one).
    """

    img_shape: tuple[int, ...]
    noise_schedule: Optional[NoiseSchedule]

    @abstractmethod
    def forward(self, images: t.Tensor, num_steps: t.Tensor) -> t.Tensor:
        """images: (batch, channels, height, width); num_steps: (batch,). Returns the predicted
        noise, same shape as images."""


class TinyDiffuser(DiffusionModel):
    def __init__(self, img_shape: tuple[int, int, int], hidden_size: int = 256, max_steps: int = 1000):
        """img_shape: (channels, height, width); max_steps scales the step input to 0..1."""
        super().__init__()
        self.img_shape = tuple(img_shape)
        self.noise_schedule = None
        self.max_steps = max_steps
        n_pixels = math.prod(img_shape)
        self.layers = nn.Sequential(nn.Linear(n_pixels + 1, hidden_size), nn.ReLU(),
                                    nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, n_pixels))

    def forward(self, images: t.Tensor, num_steps: t.Tensor) -> t.Tensor:
        """images: (batch, channels, height, width); num_steps: (batch,) int64. Returns images' shape."""
        flat = rearrange(images, "b c h w -> b (c h w)")
        steps = rearrange(num_steps.float() / self.max_steps, "b -> b 1")
        out = self.layers(t.cat([flat, steps], dim=1))
        channels, height, width = self.img_shape
        return rearrange(out, "b (c h w) -> b c h w", c=channels, h=height, w=width)


@dataclass
class TrainConfig:
    """What `train` needs to know. `max_steps` is the length of the noise schedule."""
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    max_steps: int = 1000
    seed: int = 0
    time_budget_s: Optional[float] = None  # stop early, after the step that crosses it


@dataclass
class TrainLog:
    """Loss per optimiser step, and the wall-clock seconds spent."""
    losses: list[float]
    seconds: float


def _batches(data: t.Tensor, batch_size: int, generator: t.Generator) -> Iterator[t.Tensor]:
    order = t.randperm(len(data), generator=generator)
    for start in range(0, len(data), batch_size):
        yield data[order[start : start + batch_size]]


def train(
    model: DiffusionModel,
    trainset: t.Tensor,
    config: TrainConfig = TrainConfig(),
    on_step: Optional[Callable[[int, float], None]] = None,
) -> TrainLog:
    """Train `model` to predict the noise added by `noise_img` (the simplified DDPM loss).
    trainset: shape (n, channels, height, width), values in [-1, 1]; it is moved to the model's
    device. `on_step(step, loss)` is called after every optimiser step (a progress bar, say).
    The schedule is attached to the model as `model.noise_schedule` for sampling later.
    """
    if trainset.ndim != 4 or tuple(trainset.shape[1:]) != tuple(model.img_shape):
        raise ValueError(
            f"trainset must have shape (n, {', '.join(map(str, model.img_shape))}), got {tuple(trainset.shape)}"
        )
    device = next(model.parameters()).device
    schedule = NoiseSchedule(config.max_steps, device)
    model.noise_schedule = schedule
    data = trainset.to(device)
    generator = t.Generator().manual_seed(config.seed)
    t.manual_seed(config.seed)
    optimiser = t.optim.Adam(model.parameters(), lr=config.lr)
    losses: list[float] = []
    start = time.perf_counter()
    model.train()
    for _ in range(config.epochs):
        for images in _batches(data, config.batch_size, generator):
            num_steps, noise, noised = noise_img(images, schedule)
            loss = nn.functional.mse_loss(model(noised, num_steps), noise)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            if on_step is not None:
                on_step(len(losses), losses[-1])
            if config.time_budget_s is not None and time.perf_counter() - start > config.time_budget_s:
                return TrainLog(losses, time.perf_counter() - start)
    return TrainLog(losses, time.perf_counter() - start)


@t.inference_mode()
def sample(
    model: DiffusionModel, n_samples: int, return_all_steps: bool = False, seed: Optional[int] = None
) -> Union[t.Tensor, list[t.Tensor]]:
    """Draw images with DDPM's Algorithm 2, from pure noise down to step 1.
    Uses `sigma_t^2 = beta_t`. Returns (n_samples, channels, height, width), or with
    `return_all_steps` the list of every intermediate batch, starting with the initial noise.
    """
    schedule = model.noise_schedule
    if schedule is None:
        raise ValueError("model.noise_schedule is None: train the model (or attach a schedule) first")
    device = next(model.parameters()).device
    generator = None if seed is None else t.Generator(device=device).manual_seed(seed)
    model.eval()
    x = t.randn((n_samples, *model.img_shape), device=device, generator=generator)
    steps = [x]
    for step in range(len(schedule), 0, -1):
        num_steps = t.full((n_samples,), step, device=device, dtype=t.long)
        beta, alpha, alpha_bar = schedule.beta(step), schedule.alpha(step), schedule.alpha_bar(step)
        predicted_noise = model(x, num_steps)
        mean = (x - beta / (1 - alpha_bar).sqrt() * predicted_noise) / alpha.sqrt()
        if step > 1:
            z = t.randn(x.shape, device=device, generator=generator)
            x = mean + beta.sqrt() * z
        else:
            x = mean
        if return_all_steps:
            steps.append(x)
    return steps if return_all_steps else x
