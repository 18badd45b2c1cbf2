"""How good are the shipped weights in a Unet whose attention projections lack biases?

    .venv/bin/python benchmarks/checkpoint_without_attention_biases.py [--samples 64] [--seeds 0 1 2]

The loader gives such a Unet every weight it can hold and leaves out the trained query biases and
the output biases that have nowhere to go (w3d4_pairing.missing_biases_note). This loads the
checkpoint into the solution and into each correct variant of tests/correct/ whose attention lacks
biases, draws --samples digits for each sampling seed, and prints the digits demo's quality measure
(mean distance from each sample to its nearest training digit, over that of as many held-out real
digits: about 1 for a model whose samples are as close to the training set as new real digits are)
and the largest difference from the trained network's output on the checkpoint's stored inputs.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import torch as t  # noqa: E402

import training  # noqa: E402, F401  (makes w3d4_digits, the solutions and the checks importable)
import correct  # noqa: E402, I001  (the corpus of correct answers imports the checks)
import w3d4_digits as digits  # noqa: E402
import w3d4_part2_unet_solution as solution  # noqa: E402

VARIANTS = ("bias_free_matmul", "conv_bias_free_sdpa", "lucidrains_style")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()

    t.set_num_threads(1)  # tiny tensors: a second thread only adds OpenMP waiting on a busy machine
    trainset, heldout = digits.load_digits_split(n_held_out=max(args.samples, digits.N_HELD_OUT))
    heldout = heldout[: args.samples]
    untrained = digits.untrained_samples(solution.Unet, args.samples, device=t.device("cpu"))
    print(f"{args.samples} samples per seed, seeds {args.seeds}; held-out digits score "
          f"{digits.nearest_neighbour_distance(heldout, trainset):.3f}")
    print(f"{'Unet':<24} {'biases':<7} {'output diff':>11}  ratio samples / held-out, per seed (mean)")
    for name, unet_class in [("solution", solution.Unet)] + [(v, correct.load(v).Unet) for v in VARIANTS]:
        t.manual_seed(0)
        model = digits.build_unet(unet_class)
        info = digits.load_checkpoint(model, verbose=False)
        ratios = [digits.measure_quality(digits.sample_digits(model, args.samples, seed), untrained, trainset, heldout).ratio
                  for seed in args.seeds]
        print(f"{name:<24} {info.biases or '-':<7} {info.max_difference:11.3g}  "
              f"{' '.join(f'{r:.3f}' for r in ratios)}  ({sum(ratios) / len(ratios):.3f})", flush=True)


if __name__ == "__main__":
    main()
