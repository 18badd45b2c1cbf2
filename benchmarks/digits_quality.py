"""Does the Unet learn to draw digits in at most five minutes on a CPU? Train, sample, measure.

    .venv/bin/python benchmarks/digits_quality.py [--budget 300] [--samples 200] [--device cpu]

Trains the solution's `Unet(**UNET_CONFIG)` on scikit-learn's bundled 8x8 digits with part 1's loop
and TRAIN_CONFIG, stopping after the step that crosses --budget seconds (or at the end of
TRAIN_CONFIG's epochs, if that comes first). Then draws --samples digits with part 1's DDPM sampler
and prints the mean distance from each image to its nearest training image (L2, pixels in [-1, 1])
for four sets of as many images: the samples, held-out real digits (what a perfect model scores),
samples of the same Unet before training, and Gaussian noise clipped to [-1, 1]. For the same four
sets it prints part 3's measures, computed with the shipped digits classifier: the Frechet distance
of their features to the training digits' features, and the classifier score. Goal: samples /
held-out at most 1.3, and the samples' Frechet distance much closer to the held-out digits' than to
noise's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch as t  # noqa: E402

import training  # noqa: E402, F401  (makes w3d4_digits and the solutions importable)
import w3d4_digits as digits  # noqa: E402
import w3d4_classifier  # noqa: E402
import w3d4_part2_unet_solution as solution  # noqa: E402
from w3d4_part3_train_evaluate_solution import classifier_score, frechet_distance  # noqa: E402

GOAL_RATIO = 1.3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="training time cap in seconds (default 300)")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args()

    device = t.device(args.device) if args.device else digits.default_device()
    config = replace(digits.TRAIN_CONFIG, time_budget_s=args.budget)
    trainset, heldout = digits.load_digits_split(n_held_out=max(args.samples, digits.N_HELD_OUT))
    t.manual_seed(config.seed)
    model = digits.build_unet(solution.Unet).to(device)

    print(f"device: {device}, torch threads: {t.get_num_threads()}, CPUs: {os.cpu_count()}, "
          f"training budget: {args.budget:.0f} s (at most {config.epochs} epochs)", flush=True)
    log = digits.train_digits(model, trainset, config, progress=False)
    start = time.perf_counter()
    samples = digits.sample_digits(model, args.samples)
    untrained = digits.untrained_samples(solution.Unet, args.samples, config.seed, device)
    quality = digits.measure_quality(samples, untrained, trainset, heldout[: args.samples])
    sampling = time.perf_counter() - start
    classifier = w3d4_classifier.load_classifier()
    reference = classifier.feature_matrix(trainset)
    sets = {"samples": samples, "held-out digits": heldout[: args.samples], "untrained": untrained,
            "noise": digits.clipped_noise(args.samples)}
    fd = {name: frechet_distance(classifier.feature_matrix(images), reference) for name, images in sets.items()}
    score = {name: classifier_score(classifier.probabilities(images)) for name, images in sets.items()}

    print(f"trained {len(log.losses)} steps ({len(log.losses) / log.seconds:.1f} steps/s) in {log.seconds:.1f} s; "
          f"loss over the last 100 steps {sum(log.losses[-100:]) / len(log.losses[-100:]):.4f}")
    print(f"sampled 2 x {args.samples} digits in {sampling:.1f} s")
    print(quality)
    print("with the digits classifier's features (Frechet distance to the training digits) and probabilities:")
    for name in sets:
        print(f"  {name:<30} FD {fd[name]:8.2f}   classifier score {score[name]:5.2f}")
    fd_closer = fd["samples"] - fd["held-out digits"] < (fd["noise"] - fd["samples"]) / 10
    verdict = "met" if quality.ratio <= GOAL_RATIO and quality.samples < quality.noise / 2 and fd_closer else "NOT met"
    print(f"goal: ratio at most {GOAL_RATIO}, far from noise ({quality.samples:.2f} vs {quality.noise:.2f}), and an FD "
          f"much closer to the held-out digits' than to noise's ({fd['samples']:.1f} vs {fd['held-out digits']:.1f} and "
          f"{fd['noise']:.1f}) within {args.budget:.0f} s of training -> {verdict}")


if __name__ == "__main__":
    main()
