# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: nbgrader,-all
#     notebook_metadata_filter: -all
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # W3D4 part 1: diffusion from scratch
#
# A diffusion model generates images by learning to *undo noise*. Take a clean image and add a
# little Gaussian noise, then a little more, step after step, until only noise is left: that is the
# *forward process*, and it needs no learning. Then train a network to look at a noised image and
# guess which noise was added. With it we can run the film backwards: start from pure noise and
# remove a little predicted noise at every step until an image appears.
#
# We follow the DDPM paper, [Denoising Diffusion Probabilistic Models](https://arxiv.org/abs/2006.11239)
# (Ho et al., 2020), and its notation: `beta_t` is the variance of the noise added at step `t`,
# `alpha_t = 1 - beta_t`, and `alpha_bar_t = alpha_1 * alpha_2 * ... * alpha_t`. Steps count from
# 1: noising a clean image `x_0` once gives `x_1`, and uses `beta_1`. Today you build every piece
# on a toy dataset of colour gradients that a tiny network learns in seconds; in part 2 you build
# the paper's U-Net and plug it into the training loop and the sampler you write here.
#
# **How to work through this notebook.** Fill in each cell that says `# YOUR CODE HERE` and
# delete the `raise NotImplementedError()` line. The cell after each exercise runs a test from
# `w3d4_test`: it prints one line starting with `PASS`, or stops with a message naming the most
# likely mistake. Your random functions are judged by the distribution of what they return over
# many draws, or by whether the values they return agree with each other, so any correct way of
# drawing the random numbers passes.
#
# ## Contents
#
# [A toy dataset](#A-toy-dataset) · [The forward process](#The-forward-process) ·
# [A noise schedule you can index](#A-noise-schedule-you-can-index) · [A tiny denoiser](#A-tiny-denoiser) ·
# [Training](#Training) · [Sampling](#Sampling)

# %%
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Union

import torch as t
from einops import rearrange, repeat
from torch import nn

MAIN = __name__ == "__main__"

# %%
if MAIN:
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm

    import w3d4_test

# %% [markdown]
# ## A toy dataset
#
# Our images are linear colour gradients: each blends from one random colour to another along a
# random direction. `gradient_images` returns pixel values in `[0, 1]`; diffusion models prefer
# `[-1, 1]`, centred on zero like the noise we will add. `show_images` draws a batch of images with
# values in `[-1, 1]` as a grid.

# %%
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


# %% [markdown]
# Write `normalize_img`, which maps `[0, 1]` linearly onto `[-1, 1]`, and `denormalize_img`, its
# inverse, elementwise on tensors of any shape.

# %% nbgrader={"grade_id": "normalize_img"}
def normalize_img(img: t.Tensor) -> t.Tensor:
    """Pixel values in [0, 1] -> [-1, 1]. img: any shape; returns the same shape."""
    ### BEGIN SOLUTION
    return img * 2 - 1
    ### END SOLUTION


def denormalize_img(img: t.Tensor) -> t.Tensor:
    """Pixel values in [-1, 1] -> [0, 1], the inverse of normalize_img."""
    ### BEGIN SOLUTION
    return (img + 1) / 2
    ### END SOLUTION


# %% nbgrader={"grade_id": "test_normalize_img", "points": 1}
if MAIN:
    w3d4_test.test_normalize_img(normalize_img, denormalize_img)

# %%
if MAIN:
    examples = normalize_img(gradient_images(16, (3, 16, 16)))
    print(f"values from {examples.min():.2f} to {examples.max():.2f}")
    show_images(examples, "Sixteen gradient images")
    plt.show()

# %% [markdown]
# ## The forward process
#
# One step of the forward process scales the image down a little and adds a little noise
# (equation 2 of the paper):
#
# $$x_t = \sqrt{1 - \beta_t}\, x_{t-1} + \sqrt{\beta_t}\, \epsilon, \qquad \epsilon \sim \mathcal{N}(0, I)$$
#
# The scaling keeps the variance at 1: `(1 - beta_t) * 1 + beta_t = 1`. After many steps the image
# is forgotten and standard Gaussian noise remains, whatever we started from; sampling will start
# there. The *variance schedule* `beta_1, ..., beta_T` says how much noise each step adds. DDPM
# uses `T = 1000` steps and betas rising linearly from `1e-4` to `0.02`: small steps while the
# image still has fine detail to lose, bigger ones later.
#
# Write `linear_schedule(max_steps, min_noise, max_noise)`, which returns the `max_steps` betas:
# the first is `min_noise`, the last `max_noise`, evenly spaced in between.

# %% nbgrader={"grade_id": "linear_schedule"}
BETA_START, BETA_END = 1e-4, 0.02  # DDPM's schedule
Device = Union[t.device, str]


def linear_schedule(max_steps: int, min_noise: float = BETA_START, max_noise: float = BETA_END) -> t.Tensor:
    """The betas of DDPM's linear schedule. Returns (max_steps,): betas[t - 1] is beta_t."""
    ### BEGIN SOLUTION
    return t.linspace(min_noise, max_noise, max_steps)
    ### END SOLUTION


# %% nbgrader={"grade_id": "test_linear_schedule", "points": 1}
if MAIN:
    w3d4_test.test_linear_schedule(linear_schedule)

# %% [markdown]
# Now write `q_eq2(x, num_steps, betas)`, which applies equation 2 `num_steps` times to a batch of
# images `x`, drawing fresh noise at every step, and returns `x_{num_steps}`. The first step uses
# `betas[0]`, which is `beta_1`.

# %% nbgrader={"grade_id": "q_eq2"}
def q_eq2(x: t.Tensor, num_steps: int, betas: t.Tensor) -> t.Tensor:
    """Noise x step by step with equation 2. x: any shape; betas: (at least num_steps,).
    Returns x after num_steps steps, same shape as x."""
    ### BEGIN SOLUTION
    for beta in betas[:num_steps]:
        x = (1 - beta).sqrt() * x + beta.sqrt() * t.randn_like(x)
    return x
    ### END SOLUTION


# %% nbgrader={"grade_id": "test_q_eq2", "points": 1}
if MAIN:
    w3d4_test.test_q_eq2(q_eq2)

# %% [markdown]
# Training needs images noised by up to a thousand steps, and a loop that long is slow. A sum of
# independent Gaussians is Gaussian, so the chain collapses into one step (equation 4):
#
# $$x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon, \qquad
# \bar\alpha_t = \prod_{s=1}^{t} (1 - \beta_s)$$
#
# For two steps: `x_2 = sqrt(alpha_2) (sqrt(alpha_1) x_0 + sqrt(beta_1) e_1) + sqrt(beta_2) e_2`: the
# image is scaled by `sqrt(alpha_1 alpha_2)` and the noise has variance `alpha_2 beta_1 + beta_2 = 1 - alpha_1 alpha_2`.
#
# Write `q_eq4(x, num_steps, betas)`, which gives the same distribution as `q_eq2` in one step.

# %% nbgrader={"grade_id": "q_eq4"}
def q_eq4(x: t.Tensor, num_steps: int, betas: t.Tensor) -> t.Tensor:
    """Noise x by num_steps steps at once with equation 4. x: any shape; betas: (at least num_steps,).
    Returns a tensor of the same shape as x."""
    ### BEGIN SOLUTION
    alpha_bar = t.prod(1 - betas[:num_steps])
    return alpha_bar.sqrt() * x + (1 - alpha_bar).sqrt() * t.randn_like(x)
    ### END SOLUTION


# %% nbgrader={"grade_id": "test_q_eq4", "points": 2}
if MAIN:
    w3d4_test.test_q_eq4(q_eq4)

# %% [markdown]
# The two functions agree *in distribution*: below, a pixel of value 0.8 is noised 20,000 times each
# way with large betas, and their histograms match. Then an image noised by more and more steps.

# %%
if MAIN:
    demo_betas = linear_schedule(10, 0.05, 0.3)
    pixel = t.full((20_000,), 0.8)
    for q, label in ((q_eq2, "equation 2"), (q_eq4, "equation 4")):
        plt.hist(q(pixel, 6, demo_betas).numpy(), bins=80, alpha=0.5, density=True, label=label)
    plt.legend()
    plt.title("A pixel of value 0.8 after 6 steps")
    plt.show()
    steps_shown = [0, 10, 50, 100, 200, 400, 700, 1000]
    noised_row = t.cat([q_eq4(examples[:1], n, linear_schedule(1000)) for n in steps_shown])
    show_images(noised_row, f"Steps {steps_shown}")
    plt.show()

# %% [markdown]
# ## A noise schedule you can index
#
# Training and sampling look up `beta_t`, `alpha_t` and `alpha_bar_t` for whole batches of steps,
# so we precompute tables. `NoiseSchedule` keeps them as *buffers*: tensors that belong to a module
# and move with it on `.to(device)`, but are not trained. Register the buffers `betas`, `alphas`
# and `alpha_bars`, each `(max_steps,)` (use your `linear_schedule`), and write `_lookup`, which
# returns the entries for a step number or a tensor of them. Step `s` lives at index `s - 1`. For
# a step outside `1..max_steps` raise
# `IndexError(f"num_steps must lie in 1..{self.max_steps}, got {steps.tolist()}")`: indexing
# would silently read `table[-1]` for step 0.

# %% nbgrader={"grade_id": "noise_schedule"}
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
        ### BEGIN SOLUTION
        betas = linear_schedule(max_steps, BETA_START, BETA_END).to(device)
        alphas = 1.0 - betas
        self.register_buffer("betas", betas)
        self.register_buffer("alphas", alphas)
        self.register_buffer("alpha_bars", t.cumprod(alphas, dim=0))
        ### END SOLUTION

    def _lookup(self, table: t.Tensor, num_steps: Union[int, t.Tensor]) -> t.Tensor:
        """table: (max_steps,); num_steps: an int or a tensor of ints. Returns table entries, shaped like num_steps."""
        ### BEGIN SOLUTION
        steps = t.as_tensor(num_steps, device=table.device)
        if ((steps < 1) | (steps > self.max_steps)).any():
            raise IndexError(f"num_steps must lie in 1..{self.max_steps}, got {steps.tolist()}")
        return table[steps.long() - 1]
        ### END SOLUTION

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


# %% nbgrader={"grade_id": "test_noise_schedule", "points": 2}
if MAIN:
    w3d4_test.test_noise_schedule(NoiseSchedule)

# %% [markdown]
# `noise_img`, called by training for every batch, draws for each image a number of steps uniformly
# from `1..max_steps` and standard Gaussian noise, and applies equation 4. It returns the steps, the
# noise and the noised images: the network will learn to recover the noise from the other two.
# `reconstruct` solves equation 4 for `x_0`, given a noised image, its steps and the noise (or a
# network's *guess* of it). `_per_image` makes one number per image broadcast over its pixels.

# %% nbgrader={"grade_id": "noise_img"}
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
    ### BEGIN SOLUTION
    max_steps = len(noise_schedule) if max_steps is None else max_steps
    num_steps = t.randint(1, max_steps + 1, (img.shape[0],), device=img.device)
    noise = t.randn_like(img)
    alpha_bar = _per_image(noise_schedule.alpha_bar(num_steps))
    noised = alpha_bar.sqrt() * img + (1 - alpha_bar).sqrt() * noise
    return num_steps, noise, noised
    ### END SOLUTION


# %% nbgrader={"grade_id": "test_noise_img", "points": 2}
if MAIN:
    w3d4_test.test_noise_img(noise_img, NoiseSchedule)

# %% nbgrader={"grade_id": "reconstruct"}
def reconstruct(
    noisy_img: t.Tensor, noise: t.Tensor, num_steps: t.Tensor, noise_schedule: NoiseSchedule
) -> t.Tensor:
    """Invert `noise_img` given the noise (or a model's prediction of it).
    noisy_img, noise: shape (batch, channels, height, width); num_steps: shape (batch,)
    Returns the estimate of the clean image, same shape as noisy_img.
    """
    ### BEGIN SOLUTION
    alpha_bar = _per_image(noise_schedule.alpha_bar(num_steps))
    return (noisy_img - (1 - alpha_bar).sqrt() * noise) / alpha_bar.sqrt()
    ### END SOLUTION


# %% nbgrader={"grade_id": "test_reconstruct", "points": 1}
if MAIN:
    w3d4_test.test_reconstruct(reconstruct, NoiseSchedule)

# %%
if MAIN:
    schedule = NoiseSchedule(1000)
    steps, noise, noised = noise_img(examples[:8], schedule)
    show_images(t.cat([examples[:8], noised, reconstruct(noised, noise, steps, schedule)]),
                f"Clean, noised by {steps.tolist()} steps, reconstructed")
    plt.show()

# %% [markdown]
# ## A tiny denoiser
#
# Our networks predict the noise in a batch of noised images, given each image's number of steps.
# `DiffusionModel` is their interface, here and in part 2: `forward(images, num_steps)` returns a
# tensor shaped like `images`; a model also carries its image shape and the noise schedule that
# `train` attaches and `sample` reads.
#
# Write `TinyDiffuser`, a multilayer perceptron: flatten each image, append its number of steps
# divided by `max_steps` (networks prefer inputs near 0..1), and map that through `Linear`, `ReLU`,
# `Linear`, `ReLU`, `Linear` to one number per pixel, reshaped into an image. The steps arrive as
# int64, shape `(batch,)`. Each image of a batch must be processed on its own.

# %%
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


# %% nbgrader={"grade_id": "tiny_diffuser"}
class TinyDiffuser(DiffusionModel):
    def __init__(self, img_shape: tuple[int, int, int], hidden_size: int = 256, max_steps: int = 1000):
        """img_shape: (channels, height, width); max_steps scales the step input to 0..1."""
        super().__init__()
        self.img_shape = tuple(img_shape)
        self.noise_schedule = None
        self.max_steps = max_steps
        ### BEGIN SOLUTION
        n_pixels = math.prod(img_shape)
        self.layers = nn.Sequential(nn.Linear(n_pixels + 1, hidden_size), nn.ReLU(),
                                    nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, n_pixels))
        ### END SOLUTION

    def forward(self, images: t.Tensor, num_steps: t.Tensor) -> t.Tensor:
        """images: (batch, channels, height, width); num_steps: (batch,) int64. Returns images' shape."""
        ### BEGIN SOLUTION
        flat = rearrange(images, "b c h w -> b (c h w)")
        steps = rearrange(num_steps.float() / self.max_steps, "b -> b 1")
        out = self.layers(t.cat([flat, steps], dim=1))
        channels, height, width = self.img_shape
        return rearrange(out, "b (c h w) -> b c h w", c=channels, h=height, w=width)
        ### END SOLUTION


# %% nbgrader={"grade_id": "test_tiny_diffuser", "points": 1}
if MAIN:
    w3d4_test.test_tiny_diffuser(TinyDiffuser)

# %% [markdown]
# ## Training
#
# The simplified objective of the paper (equation 14, Algorithm 1) is short: noise a batch of clean
# images with `noise_img`, ask the model for the noise, and minimise the mean squared error between
# its prediction and the noise actually added. The target is the *noise*, not the clean image.
#
# `TrainConfig` holds the settings, `TrainLog` the result, and `_batches` shuffles a dataset into
# batches with a seeded generator. Write `train`: find the model's device, build a `NoiseSchedule`
# of `config.max_steps` steps there, attach it as `model.noise_schedule`, and move the data over;
# seed torch with `config.seed`, make a generator seeded with it for `_batches`, and an Adam
# optimiser with `config.lr`. For each epoch and batch, compute the loss, take an optimiser step,
# append `loss.item()` and call `on_step(step_number, loss)` if given. When `config.time_budget_s`
# is set and exceeded after a step, stop at once. Return `TrainLog(losses, seconds)`.

# %%
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


# %% nbgrader={"grade_id": "train_loop"}
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
    ### BEGIN SOLUTION
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
    ### END SOLUTION


# %% nbgrader={"grade_id": "test_train_loop", "points": 2}
if MAIN:
    w3d4_test.test_train_loop(train, TrainConfig)

# %% [markdown]
# Now train a `TinyDiffuser` on 4,000 gradient images of 8x8 pixels, with a schedule of 200 steps
# and a progress bar. It takes about half a minute on a laptop's CPU.

# %% tags=["skip-when-grading"]
if MAIN:
    toy_data = normalize_img(gradient_images(4000, (3, 8, 8)))
    toy_config = TrainConfig(epochs=100, batch_size=256, lr=2e-3, max_steps=200)
    toy_model = TinyDiffuser((3, 8, 8), hidden_size=512, max_steps=toy_config.max_steps)
    with tqdm(total=toy_config.epochs * math.ceil(len(toy_data) / toy_config.batch_size)) as bar:
        def show_progress(step: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")

        toy_log = train(toy_model, toy_data, toy_config, on_step=show_progress)
    plt.plot(toy_log.losses)
    plt.xlabel("optimiser step")
    plt.ylabel("mean squared error of the predicted noise")
    plt.yscale("log")
    plt.show()

# %% [markdown]
# ## Sampling
#
# To generate an image we run the forward process backwards (Algorithm 2 of the paper). Start
# from pure noise `x_T ~ N(0, I)`; then for `t = T, T-1, ..., 1`, predict the noise
# `eps = model(x_t, t)` and step to
#
# $$x_{t-1} = \frac{1}{\sqrt{\alpha_t}} \left( x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\, \epsilon \right) + \sigma_t z,
# \qquad z \sim \mathcal{N}(0, I),$$
#
# except that the last step, from `x_1` to `x_0`, adds no noise (`z = 0`). The paper found two
# choices of `sigma_t^2` about equally good: `beta_t`, and the smaller
# `beta_tilde_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)`. Use `sigma_t^2 = beta_t`.
#
# Write `sample`: run the model on the device of its parameters, with `model.noise_schedule`. When
# `seed` is given, draw every random number from a `t.Generator(device=device)` seeded with it, so
# that a seed always gives the same images. With `return_all_steps`, return the list of all `T + 1`
# batches, from the initial noise to `x_0`.

# %% nbgrader={"grade_id": "ddpm_sample"}
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
    ### BEGIN SOLUTION
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
    ### END SOLUTION


# %% nbgrader={"grade_id": "test_ddpm_sample", "points": 2}
if MAIN:
    w3d4_test.test_ddpm_sample(sample, NoiseSchedule)

# %% [markdown]
# Sixteen samples from your model, and the path of the first from noise to image. Expect colour
# gradients, a little grainy: an MLP sees an image as a flat vector and has no idea that
# neighbouring pixels are related.
#
# That is the whole DDPM recipe: a schedule, the forward process in closed form, the noise
# prediction loss and the sampler. In part 2 you build the U-Net, a network that understands
# images, and train it with the `train` and `sample` you just wrote.

# %% tags=["skip-when-grading"]
if MAIN:
    trajectory = sample(toy_model, 16, return_all_steps=True, seed=0)
    show_images(trajectory[-1], "Samples")
    plt.show()
    shown = [0, 100, 150, 180, 190, 195, 198, 200]
    show_images(t.cat([trajectory[i][:1] for i in shown]), f"Sample 1 after {shown} denoising steps")
    plt.show()
