"""python -m training: train the solution's Unet on the digits, save the checkpoint, draw the figures.

    .venv/bin/python -m training [--epochs N] [--seed S] [--out CHECKPOINT] [--figures DIR] [--device D]
    .venv/bin/python -m training classifier    part 3's digits classifier (w3d4_classifier.py)

Trains `Unet(**UNET_CONFIG)` from the lesson's solution with part 1's loop and TRAIN_CONFIG, on the
GPU when there is one. Seeded: the same machine, torch version and device give the same weights,
the same checkpoint bytes and the same figures. Writes

    training/w3d4_unet_digits.safetensors (+ .sha256)   the weights in float16, losses, quality
    figures/w3d4_digits_loss.png                         the loss per optimiser step
    figures/w3d4_digits_denoising.png                    one held-out digit noised and denoised
    figures/w3d4_digits_samples.png                      40 samples beside 40 held-out digits

and prints the four nearest-neighbour distances of the quality measure, their ratio, and the
training time. Sampling and the figures use the float16-rounded weights, that is, the checkpoint.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch as t

from training import REPO

import w3d4_digits as digits  # noqa: E402  (importable once the training package is)

FIGURES = REPO / "figures"
N_QUALITY_SAMPLES = 200  # the quality measure's sample count
N_SHOWN = 40  # samples in the figure


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    config = digits.TRAIN_CONFIG
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=config.epochs, help=f"passes over the 1597 training digits (default {config.epochs})")
    parser.add_argument("--seed", type=int, default=config.seed, help=f"seeds the weights and the training (default {config.seed})")
    parser.add_argument("--out", type=Path, default=digits.CHECKPOINT, help="where to write the checkpoint (default: the shipped one)")
    parser.add_argument("--figures", type=Path, default=FIGURES, help="where to write the three PNGs (default: figures/)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def save_figures(model, losses, heldout, samples, folder: Path) -> list[Path]:
    """The three PNGs, in the house style and without timestamps, so that a rerun gives the same bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from figures.style import house_style, save

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with house_style():
        drawings = {
            "w3d4_digits_loss.png": lambda: digits.plot_losses(losses),
            "w3d4_digits_denoising.png": lambda: digits.plot_denoising(*digits.denoise_demo(model, heldout[0])),
            "w3d4_digits_samples.png": lambda: digits.plot_samples(samples[:N_SHOWN], heldout),
        }
        for name, draw in drawings.items():
            fig = draw()
            save(fig, folder / name)
            plt.close(fig)
            written.append(folder / name)
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["classifier"]:
        import w3d4_classifier

        return w3d4_classifier.main()
    args = parse_args(argv)
    import w3d4_part2_unet_solution as solution

    device = t.device(args.device) if args.device else digits.default_device()
    config = replace(digits.TRAIN_CONFIG, epochs=args.epochs, seed=args.seed)
    trainset, heldout = digits.load_digits_split()

    t.manual_seed(config.seed)  # the initial weights
    model = digits.build_unet(solution.Unet).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"training Unet({', '.join(f'{k}={v}' for k, v in digits.UNET_CONFIG.items())}), {n_params:,} parameters, "
          f"on {device} ({t.get_num_threads()} CPU threads): {config.epochs} epochs of {len(trainset)} digits", flush=True)

    log = digits.train_digits(model, trainset, config, progress=not args.quiet)
    digits.round_to_float16(model)  # from here on, the model is the checkpoint

    start = time.perf_counter()
    samples = digits.sample_digits(model, N_QUALITY_SAMPLES)
    quality = digits.measure_quality(samples, digits.untrained_samples(solution.Unet, N_QUALITY_SAMPLES, config.seed, device), trainset, heldout)
    sampling = time.perf_counter() - start

    record = {"quality": asdict(quality), "quality_samples": N_QUALITY_SAMPLES}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    digest = digits.save_checkpoint(model, log.losses, config, args.out, record=record)
    written = save_figures(model, log.losses, heldout, samples, args.figures)

    print(quality)
    print(f"trained {len(log.losses)} steps in {log.seconds:.1f} s on {device}; "
          f"sampling 2 x {N_QUALITY_SAMPLES} digits took {sampling:.1f} s")
    print(f"final loss (mean of the last 100 steps): {sum(log.losses[-100:]) / len(log.losses[-100:]):.4f}")
    print(f"wrote {_shown(args.out)} (SHA-256 {digest[:16]}..., {args.out.stat().st_size:,} bytes) and {_shown(digits.sha256_file(args.out))}")
    for path in written:
        print(f"wrote {_shown(path)}")
    return 0


def _shown(path: Path) -> str:
    path = Path(path).resolve()
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


if __name__ == "__main__":
    sys.exit(main())
