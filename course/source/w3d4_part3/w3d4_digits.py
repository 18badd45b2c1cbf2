# Generated from training/w3d4_digits.py by `python -m grader build`: edit that file, not this one.
"""Does the Unet work? Train it on scikit-learn's bundled 8x8 digits, sample, and measure.

Everything the lesson's "Does it work?" section needs beside part 1's module, in one file so that
the student folder stays self-contained: the digits with a held-out split, part 1's training loop
and sampler set up for them, a quality measure, the pictures, and a loader for the shipped
checkpoint that fits the weights onto anyone's `Unet` that follows the lesson's diagrams.

    trainset, heldout = load_digits_split()           # (1597, 1, 8, 8) and (200, 1, 8, 8), in [-1, 1]
    model = build_unet(Unet)                          # Unet(**UNET_CONFIG)
    log = train_digits(model, trainset)               # a few minutes on a laptop CPU
    info = load_checkpoint(model)                     # or: the shipped weights, in a second
    samples = sample_digits(model, 40)

Needs torch, einops and matplotlib; scikit-learn only for `load_digits` (the images ship inside
the package, nothing is downloaded), safetensors only for checkpoints, tqdm only for a progress bar.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Union

import torch as t
from einops import rearrange, repeat
from torch import nn

from w3d4_pairing import (ArchitectureMismatch, CheckpointError, best_pairing, checkpoint_layers, expected_difference,
                          layers_in_order_of_use, match_parameters, missing_biases_note, pairings_to_try)
from w3d4_part1_diffusion_training_solution import (
    DiffusionModel,
    NoiseSchedule,
    TrainConfig,
    TrainLog,
    reconstruct,
    sample,
    show_images,
    train,
)

# A Unet small enough to train in minutes on a CPU: 8x8 images, 16 channels, two levels.
UNET_CONFIG = {"image_shape": (1, 8, 8), "channels": 16, "dim_mults": (1, 2), "groups": 4, "max_steps": 200}
# 13 batches an epoch, 2,600 steps: about seven minutes on a shared 2-core CPU (6 steps a second).
TRAIN_CONFIG = TrainConfig(epochs=200, batch_size=128, lr=2e-3, max_steps=200, seed=0)
N_HELD_OUT = 200  # real digits kept out of training, to calibrate the quality measure
SPLIT_SEED = 0
SAMPLE_SEED = 0
DENOISE_STEPS = (0, 10, 25, 50, 100, 150, 200)

CHECKPOINT = Path(__file__).with_name("w3d4_unet_digits.safetensors")
FORMAT = "w3d4-unet-digits/1"
METADATA_KEY = "w3d4"  # the safetensors header entry that holds the training record, as JSON
EMBEDDING_CLASS = "SinusoidalPositionEmbeddings"  # the lesson's class name: how the loader finds it
FINGERPRINT_STEPS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 120, 150, 180, 200)
OUTPUT_TOLERANCE = 1e-3


# --- data -------------------------------------------------------------------------------------


def load_digits_split(n_held_out: int = N_HELD_OUT, seed: int = SPLIT_SEED) -> tuple[t.Tensor, t.Tensor]:
    """scikit-learn's 1797 handwritten digits as (n, 1, 8, 8) float32 images scaled to [-1, 1].

    Returns (trainset, heldout): a seeded random split, `n_held_out` images held out.
    """
    try:
        from sklearn.datasets import load_digits
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "The digits come with scikit-learn (bundled in the package, no download): "
            "`pip install scikit-learn`, then run this again."
        ) from None
    pixels = t.tensor(load_digits().images, dtype=t.float32)  # (1797, 8, 8), ink from 0 to 16
    images = rearrange(pixels / 16 * 2 - 1, "n h w -> n 1 h w")
    order = t.randperm(len(images), generator=t.Generator().manual_seed(seed))
    return images[order[n_held_out:]], images[order[:n_held_out]]


# --- the quality measure ----------------------------------------------------------------------


def nearest_neighbour_distance(queries: t.Tensor, references: t.Tensor) -> float:
    """Mean, over the queries, of the L2 distance to the closest reference image.

    queries: (n, channels, height, width); references: (m, channels, height, width).
    """
    distances = t.cdist(queries.flatten(1).double().cpu(), references.flatten(1).double().cpu())
    return distances.min(dim=1).values.mean().item()


@dataclass
class Quality:
    """Mean nearest-neighbour distance to the training images, for four sets of images."""

    samples: float
    held_out: float  # real digits the model never saw: what a perfect model would score
    untrained: float  # samples from the same Unet before training
    noise: float  # Gaussian noise clipped to [-1, 1]

    @property
    def ratio(self) -> float:
        """samples / held-out: about 1 for a model that draws digits as close to the training set as
        new real digits are. Well below 1 would mean copying training images."""
        return self.samples / self.held_out

    def __str__(self) -> str:
        rows = [("samples of the trained Unet", self.samples), ("held-out real digits", self.held_out),
                ("samples of an untrained Unet", self.untrained), ("Gaussian noise, clipped", self.noise)]
        lines = ["mean distance to the nearest training image (L2, pixels in [-1, 1]):"]
        lines += [f"  {name:<30} {value:6.2f}" for name, value in rows]
        lines.append(f"  ratio samples / held-out       {self.ratio:6.2f}")
        return "\n".join(lines)


def clipped_noise(n: int, shape: Sequence[int] = UNET_CONFIG["image_shape"], seed: int = SAMPLE_SEED) -> t.Tensor:
    return t.randn((n, *shape), generator=t.Generator().manual_seed(seed)).clamp(-1, 1)


def measure_quality(samples: t.Tensor, untrained_samples: t.Tensor, trainset: t.Tensor, heldout: t.Tensor) -> Quality:
    """Score samples (clipped to [-1, 1]) against the training images, next to the reference sets."""
    distance = lambda images: nearest_neighbour_distance(images.clamp(-1, 1), trainset)
    return Quality(
        samples=distance(samples),
        held_out=distance(heldout),
        untrained=distance(untrained_samples),
        noise=distance(clipped_noise(len(samples), trainset.shape[1:])),
    )


# --- building, training, sampling --------------------------------------------------------------


@contextlib.contextmanager
def _explain_stubs(what: str) -> Iterator[None]:
    """Turn a NotImplementedError from an unfinished exercise into a message that says which."""
    try:
        yield
    except NotImplementedError:
        traceback = sys.exc_info()[2]
        while traceback.tb_next is not None:
            traceback = traceback.tb_next
        code = traceback.tb_frame.f_code
        where = getattr(code, "co_qualname", code.co_name)
        raise NotImplementedError(
            f"{what} failed: `{where}` is not implemented yet. Finish the exercises above (their tests "
            "should print PASS), then run this cell again."
        ) from None


def build_unet(unet_class: Callable[..., DiffusionModel], **overrides) -> DiffusionModel:
    """`unet_class(**UNET_CONFIG)`, with a clear message if an exercise it uses is still a stub."""
    with _explain_stubs(f"Building {getattr(unet_class, '__name__', 'the Unet')}"):
        return unet_class(**{**UNET_CONFIG, **overrides})


def default_device() -> t.device:
    return t.device("cuda" if t.cuda.is_available() else "cpu")


def train_digits(
    model: DiffusionModel, trainset: t.Tensor, config: TrainConfig = TRAIN_CONFIG, progress: bool = True
) -> TrainLog:
    """Part 1's `train`, with a progress bar. Attaches the noise schedule to the model."""
    total = config.epochs * math.ceil(len(trainset) / config.batch_size)
    bar = _progress_bar(total) if progress else None
    on_step = None if bar is None else (lambda step, loss: bar.update(1) or bar.set_postfix(loss=f"{loss:.3f}", refresh=False))
    try:
        with _explain_stubs("Training"):
            return train(model, trainset, config, on_step=on_step)
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(total: int):
    try:
        from tqdm.auto import tqdm
    except ModuleNotFoundError:  # tqdm is optional: report every 10 % instead
        return _PrintedProgress(total)
    return tqdm(total=total, desc="training", unit="step")


class _PrintedProgress:
    def __init__(self, total: int):
        self.total, self.done, self.loss = total, 0, ""

    def update(self, n: int) -> None:
        self.done += n
        if self.done % max(1, self.total // 10) == 0 or self.done == self.total:
            print(f"training: step {self.done}/{self.total} {self.loss}", flush=True)

    def set_postfix(self, loss: str, refresh: bool = False) -> None:
        self.loss = f"loss {loss}"

    def close(self) -> None:
        pass


def sample_digits(model: DiffusionModel, n: int, seed: int = SAMPLE_SEED) -> t.Tensor:
    """n images drawn with part 1's DDPM sampler, clipped to [-1, 1], on the CPU."""
    with _explain_stubs("Sampling"):
        return sample(model, n, seed=seed).clamp(-1, 1).cpu()


@t.inference_mode()
def denoise_demo(
    model: DiffusionModel, image: t.Tensor, steps: Sequence[int] = DENOISE_STEPS, seed: int = SAMPLE_SEED
) -> tuple[t.Tensor, t.Tensor]:
    """Noise one image to each number of steps, and let the model remove the noise in one go.

    image: (channels, height, width). Returns (noised, denoised), each (len(steps), c, h, w):
    x_s = sqrt(alpha_bar_s) x_0 + sqrt(1 - alpha_bar_s) noise, and the estimate of x_0 that
    part 1's `reconstruct` computes from the model's predicted noise (step 0 is the clean image).
    """
    schedule = model.noise_schedule
    if schedule is None:
        raise ValueError("model.noise_schedule is None: train the model or load the checkpoint first")
    device = next(model.parameters()).device
    model.eval()
    clean = repeat(image.to(device), "c h w -> n c h w", n=len(steps))
    noise = t.randn(clean.shape, generator=t.Generator().manual_seed(seed)).to(device)
    num_steps = t.tensor(steps, device=device)
    noisy = num_steps > 0
    noised, denoised = clean.clone(), clean.clone()
    if noisy.any():
        s = num_steps[noisy]
        alpha_bar = rearrange(schedule.alpha_bar(s), "b -> b 1 1 1")
        noised[noisy] = alpha_bar.sqrt() * clean[noisy] + (1 - alpha_bar).sqrt() * noise[noisy]
        with _explain_stubs("Denoising"):
            predicted = model(noised[noisy], s)
        denoised[noisy] = reconstruct(noised[noisy], predicted, s, schedule)
    return noised.clamp(-1, 1).cpu(), denoised.clamp(-1, 1).cpu()


def untrained_samples(
    unet_class: Callable[..., DiffusionModel], n: int, seed: int = SAMPLE_SEED, device: Optional[t.device] = None
) -> t.Tensor:
    """n samples, clipped to [-1, 1], of `unet_class(**UNET_CONFIG)` initialised with `seed`: the
    quality measure's "untrained" reference for that class."""
    device = device or default_device()
    t.manual_seed(seed)
    model = build_unet(unet_class).to(device)
    model.noise_schedule = NoiseSchedule(UNET_CONFIG["max_steps"], device)
    return sample_digits(model, n, seed=seed)


def prepare_unet(
    unet_class: Callable[..., DiffusionModel], trainset: t.Tensor, train_now: bool = False,
    config: TrainConfig = TRAIN_CONFIG, path: Union[str, Path] = CHECKPOINT,
) -> tuple[Optional[DiffusionModel], list[float]]:
    """The lesson's entry point: `unet_class(**UNET_CONFIG)`, trained here (train_now) or given the
    shipped weights. Returns (model, loss per step), or (None, []) after printing why not: an
    unfinished exercise, a Unet that does not fit the checkpoint, a missing package or file. The
    lesson keeps running either way.
    """
    try:
        t.manual_seed(config.seed)
        model = build_unet(unet_class).to(default_device())
        if train_now:
            log = train_digits(model, trainset, config)
            print(f"Trained {len(log.losses)} steps in {log.seconds:.0f} s.")
            return model, log.losses
        return model, load_checkpoint(model, path).losses
    except (NotImplementedError, CheckpointError, ModuleNotFoundError) as error:
        print(error)
    except Exception as error:  # a bug in the Unet: say so in one line, the tests above say where
        print(f"Your Unet raised {type(error).__name__}: {error}\nRun the tests above: they name the likely mistake.")
    return None, []


# --- pictures ---------------------------------------------------------------------------------


def plot_losses(losses: Sequence[float], window: int = 50):
    """The loss per optimiser step, and its running mean over `window` steps."""
    import matplotlib.pyplot as plt

    values = t.tensor(list(losses), dtype=t.float64)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(range(1, len(values) + 1), values, color="#9bb7d9", linewidth=0.6, label="each step")
    if len(values) >= window:
        running = values.unfold(0, window, 1).mean(dim=1)
        ax.plot(range(window, len(values) + 1), running, color="#1f4e8c", linewidth=1.6,
                label=f"mean of the last {window}")
    ax.set(yscale="log", xlabel="optimiser step", ylabel="MSE of the predicted noise",
           title="Training loss")
    ax.legend()
    fig.tight_layout()
    return fig


def _show(ax, image: t.Tensor) -> None:
    ax.imshow(((image[0] + 1) / 2).clamp(0, 1), cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_denoising(noised: t.Tensor, denoised: t.Tensor, steps: Sequence[int] = DENOISE_STEPS):
    """Top row: one digit noised for more and more steps. Bottom row: the model's one-shot estimate
    of the clean digit from each noised version."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(steps), figsize=(1.1 * len(steps) + 1.2, 2.9), squeeze=False)
    for column, step in enumerate(steps):
        _show(axes[0, column], noised[column])
        _show(axes[1, column], denoised[column])
        axes[0, column].set_title(f"{step} steps", fontsize=9)
    axes[0, 0].set_ylabel("noised")
    axes[1, 0].set_ylabel("denoised")
    fig.suptitle("One digit noised, and denoised by the model in one step")
    fig.tight_layout()
    return fig


def plot_samples(samples: t.Tensor, real: Optional[t.Tensor] = None, ncols: int = 8):
    """A grid of samples, beside a grid of as many real digits when `real` is given."""
    import matplotlib.pyplot as plt

    grids = [("samples of the Unet", samples)] + ([("held-out real digits", real[: len(samples)])] if real is not None else [])
    nrows = math.ceil(len(samples) / ncols)
    fig = plt.figure(figsize=(len(grids) * (0.55 * ncols + 0.2), 0.55 * nrows + 0.6))
    for subfig, (title, images) in zip(fig.subfigures(1, len(grids), squeeze=False)[0], grids):
        axes = subfig.subplots(nrows, ncols, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, image in zip(axes.flat, images):
            _show(ax, image)
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
        subfig.suptitle(title)
        subfig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9 - 0.1 / nrows, wspace=0.08, hspace=0.08)
    return fig


# --- the checkpoint ---------------------------------------------------------------------------


class ChecksumError(CheckpointError):
    """The checkpoint's bytes are not the ones recorded in its .sha256 file."""


def sha256_file(path: Union[str, Path]) -> Path:
    return Path(f"{path}.sha256")


def sha256_of(path: Union[str, Path]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def verify_sha256(path: Union[str, Path]) -> str:
    """Check `path` against the digest in `path.sha256` (the format of `sha256sum`); return it."""
    path, record = Path(path), sha256_file(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    if not record.is_file():
        raise ChecksumError(f"{record.name} is missing: cannot check that {path.name} is the shipped file")
    expected = record.read_text(encoding="utf-8").split()[0].lower()
    actual = sha256_of(path)
    if actual != expected:
        raise ChecksumError(
            f"{path.name} is damaged or was replaced: its SHA-256 is {actual}, but {record.name} records "
            f"{expected}. Restore both files from the course folder (or retrain with TRAIN_NOW = True)."
        )
    return actual


def _embedding_order(model: nn.Module, steps: t.Tensor, reference: t.Tensor) -> tuple[Optional[t.Tensor], str]:
    """How the model's step embedding orders the reference's channels.

    Returns (order, note): order[j] is the reference channel that the model puts at channel j, or
    None when nothing needs reordering or no reordering fits (the note then says which).
    """
    module = next((m for m in model.modules() if type(m).__name__ == EMBEDDING_CLASS), None)
    if module is None:
        return None, f"no {EMBEDDING_CLASS} module found, so its channel order was not checked"
    device = next((b.device for b in module.buffers()), next(model.parameters()).device)
    with t.no_grad(), _explain_stubs(f"{EMBEDDING_CLASS}.forward"):
        yours = module(steps.to(device)).detach().double().cpu()
    reference = reference.double()
    if yours.shape != reference.shape:
        return None, f"your {EMBEDDING_CLASS} gives shape {tuple(yours.shape)}, not {tuple(reference.shape)}"
    if t.allclose(yours, reference, atol=1e-4):
        return None, ""
    gaps = t.cdist(yours.T, reference.T)  # [j, i]: your channel j against the checkpoint's channel i
    order = gaps.argmin(dim=1)
    if len(set(order.tolist())) == len(order) and gaps.min(dim=1).values.max() < 1e-3:
        return order, f"your {EMBEDDING_CLASS} orders its channels differently: the first layer after it was reordered to match"
    return None, (
        f"your {EMBEDDING_CLASS} is not a reordering of the one the checkpoint was trained with "
        "(other frequencies?), so the step embedding means something else to these weights"
    )


@dataclass
class LoadedCheckpoint:
    """What `load_checkpoint` found: the training record, and whether the model now reproduces the
    trained network's output (or, when its attention lacks biases, comes as close as it can)."""

    path: Path
    sha256: str
    unet_config: dict
    train_config: dict
    losses: list[float]
    n_parameters: int  # numbers loaded: fewer than the checkpoint's when the attention lacks biases
    max_difference: float
    biases: str = "QKVO"  # which of the attention's projections have biases
    notes: list[str] = field(default_factory=list)
    record: dict = field(default_factory=dict)  # what the training command measured: seconds, device, quality

    @property
    def matches(self) -> bool:
        """The model computes what the trained network does."""
        return self.max_difference <= OUTPUT_TOLERANCE

    @property
    def expected_difference(self) -> float:
        """How far the lesson's Unet is from the trained output without the biases this one lacks."""
        return expected_difference(self.biases)

    @property
    def as_close_as_it_can(self) -> bool:
        """matches, or differs by as much as the lesson's Unet does without the same biases."""
        return abs(self.max_difference - self.expected_difference) <= OUTPUT_TOLERANCE

    def __str__(self) -> str:
        head = (f"Loaded {self.n_parameters:,} parameters from {self.path.name} (SHA-256 {self.sha256[:12]}... verified), "
                f"trained for {len(self.losses)} steps.")
        differs = f"your Unet's output differs from the trained network's by up to {self.max_difference:.2g}"
        if self.matches:
            verdict = f"Your Unet reproduces the trained network's output (largest difference {self.max_difference:.1e})."
        elif self.as_close_as_it_can:
            verdict = (f"Without those biases {differs}, as the lesson's own Unet does without them: the rest of "
                       "your network computes what the trained one does.")
        else:
            verdict = (
                f"WARNING: with these weights {differs}"
                + (f" (the missing biases explain {self.expected_difference:.2g})" if self.expected_difference else "")
                + ", so its samples will be poor. The weights fit by shape, but some computation differs from the "
                "diagrams: check the step embedding's frequencies, the scale of the attention scores, and where "
                "each block adds the step projection and its shortcut."
            )
        return "\n".join([head, *(f"Note: {note}." for note in self.notes), verdict])


def _read_checkpoint(path: Path) -> tuple[list[tuple[str, t.Tensor]], dict[str, t.Tensor], dict]:
    try:
        from safetensors import safe_open
    except ModuleNotFoundError:
        raise ModuleNotFoundError("Loading the checkpoint needs safetensors: `pip install safetensors`") from None
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    try:
        metadata = json.loads(header.get(METADATA_KEY, "{}"))
    except json.JSONDecodeError:
        metadata = {}
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path.name} is not a {FORMAT} checkpoint (format {metadata.get('format')!r})")
    keys = sorted(key for key in tensors if key.startswith("param."))  # "param.0007.name": zero-padded order
    ordered = [(key.split(".", 2)[2], tensors[key]) for key in keys]
    fingerprint = {key.split(".", 1)[1]: value for key, value in tensors.items() if key.startswith("fingerprint.")}
    return ordered, fingerprint, metadata


def load_checkpoint(model: DiffusionModel, path: Union[str, Path] = CHECKPOINT, verbose: bool = True) -> LoadedCheckpoint:
    """Load the shipped weights into `model`, any Unet built with UNET_CONFIG that follows the diagrams.

    Verifies the file's SHA-256; traces one forward pass on one stored image to find the order in
    which the model first uses its layers; pairs them with the checkpoint's layers of the same shape
    (`pairings_to_try`: each reading of w3d4_pairing.READINGS, then the order of creation), raising
    ArchitectureMismatch when none fits; reorders the inputs of the layer after the step embedding
    if the model orders the embedding's channels differently; and keeps the first pairing with which
    the model reproduces the trained network's output on stored inputs, or, when its attention lacks
    some biases, differs from it by as much as the lesson's Unet without them (`best_pairing`; else
    the closest). A note names the biases it lacks. Attaches the noise schedule.
    """
    path = Path(path)
    digest = verify_sha256(path)
    params, fingerprint, metadata = _read_checkpoint(path)
    unet_config = metadata["unet_config"]
    device = next(model.parameters()).device
    images, steps = fingerprint["input"].to(device), fingerprint["steps"].to(device)  # (4, 1, 8, 8), (4,)
    model.eval()
    with _explain_stubs("Running the Unet"):
        mine = layers_in_order_of_use(model, images[:1], steps[:1])
    candidates = pairings_to_try(mine, checkpoint_layers(params), model, params)  # (reading, pairs), lazily
    notes = []
    order, note = _embedding_order(model, fingerprint["embedding_steps"], fingerprint["embedding"])
    if note:
        notes.append(note)

    def load(pairs: list[tuple[t.Tensor, t.Tensor]]) -> float:
        """Copy the pairs' values into the model; the largest difference from the stored output."""
        with t.no_grad():
            for param, value in pairs:
                if order is not None and value.ndim == 2 and value.shape[1] == unet_config["max_steps"]:
                    value = value[:, order]  # the layer that reads the step embedding
                param.copy_(value.to(device=device, dtype=param.dtype))
            with _explain_stubs("Running the Unet"):
                output = model(images, steps).float().cpu()
        expected = fingerprint["output"]
        return (output - expected).abs().max().item() if output.shape == expected.shape else math.inf

    pairs, biases, difference = best_pairing(candidates, load, OUTPUT_TOLERANCE)
    if biases != "QKVO":
        notes.append(missing_biases_note(biases))
    model.noise_schedule = NoiseSchedule(unet_config["max_steps"], device)
    info = LoadedCheckpoint(
        path=path,
        sha256=digest,
        unet_config=unet_config,
        train_config=metadata["train_config"],
        losses=metadata["losses"],
        n_parameters=sum(value.numel() for _, value in pairs),
        max_difference=difference,
        biases=biases,
        notes=notes,
        record=metadata.get("record", {}),
    )
    if verbose:
        print(info)
    return info


def round_to_float16(model: nn.Module) -> None:
    """Round the parameters to float16 values in place (keeping their dtype), as the checkpoint
    stores them: sample after this, and the samples are those of the shipped weights."""
    with t.no_grad():
        for param in model.parameters():
            param.copy_(param.half().to(param.dtype))


def save_checkpoint(model: DiffusionModel, losses: Sequence[float], config: TrainConfig,
                    path: Union[str, Path] = CHECKPOINT, unet_config: dict = UNET_CONFIG,
                    record: Optional[dict] = None) -> str:
    """Write the weights (float16, to keep the file small), the training record and a fingerprint
    of the model's behaviour to `path`, and its SHA-256 to `path.sha256`. Returns the digest.

    The model's own parameters are rounded to float16 first, so that the model in memory is exactly
    the one in the file (and the fingerprint is its output). `record`: anything else worth keeping
    (JSON-able), such as the training time and the quality measured.
    """
    from safetensors.torch import save_file

    path = Path(path)
    device = next(model.parameters()).device
    round_to_float16(model)
    generator = t.Generator().manual_seed(1)
    image_shape = tuple(unet_config["image_shape"])
    probe_input = t.randn((4, *image_shape), generator=generator)
    probe_steps = t.tensor([1, 20, 100, unet_config["max_steps"]])
    model.eval()
    with t.no_grad():
        probe_output = model(probe_input.to(device), probe_steps.to(device)).float().cpu()
        embedding = next(m for m in model.modules() if type(m).__name__ == EMBEDDING_CLASS)
        embedding_steps = t.tensor(FINGERPRINT_STEPS)
        embedding_values = embedding(embedding_steps.to(device)).float().cpu()
    tensors = {
        f"param.{i:04d}.{name}": param.detach().cpu().half().contiguous()
        for i, (name, param) in enumerate(model.named_parameters())
    }
    tensors.update({
        "fingerprint.input": probe_input, "fingerprint.steps": probe_steps, "fingerprint.output": probe_output,
        "fingerprint.embedding_steps": embedding_steps, "fingerprint.embedding": embedding_values,
    })
    metadata = {
        "format": FORMAT,
        "unet_config": unet_config,
        "train_config": asdict(config),
        "losses": [float(f"{loss:.5g}") for loss in losses],
        "record": record or {},
    }
    # One header entry: safetensors writes several in no fixed order, which would change the bytes.
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    digest = sha256_of(path)
    sha256_file(path).write_text(f"{digest}  {path.name}\n", encoding="utf-8")
    return digest


__all__ = [
    "UNET_CONFIG", "TRAIN_CONFIG", "CHECKPOINT", "load_digits_split", "nearest_neighbour_distance", "Quality",
    "measure_quality", "build_unet", "train_digits", "sample_digits", "untrained_samples", "prepare_unet",
    "denoise_demo", "plot_losses", "plot_denoising", "plot_samples", "show_images", "load_checkpoint",
    "save_checkpoint", "round_to_float16", "match_parameters", "verify_sha256", "CheckpointError", "ChecksumError",
    "ArchitectureMismatch", "LoadedCheckpoint",
]
