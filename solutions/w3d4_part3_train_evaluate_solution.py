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
# # W3D4 part 3: train your U-Net and measure it
#
# In part 2 you built the DDPM U-Net piece by piece. Now it earns its keep: you train it to draw
# handwritten digits on a CPU in a few minutes, look at what it draws, and then ask the harder
# question. **How good are these samples, in numbers?**
#
# Looking at a grid of samples is the first check and the most honest one, but it does not scale
# and it does not compare two models fairly. The field's standard answer is the *Fréchet Inception
# Distance* (FID, Heusel et al., 2017) and its older cousin the *Inception Score* (Salimans et al.,
# 2016). Both push images through a trained classifier and compare what comes out. You will
# implement the core of each, use them to rank four sets of images, and then see how each can be
# fooled.
#
# ## Contents
#
# 1. [Your Unet](#Your-Unet)
# 2. [Training on the digits](#Training-on-the-digits)
# 3. [A classifier as a measuring instrument](#A-classifier-as-a-measuring-instrument)
# 4. [The Fréchet distance](#frechet-distance)
# 5. [The classifier score](#The-classifier-score)
# 6. [Comparing four sets of images](#Comparing-four-sets-of-images)
# 7. [Optional: FashionMNIST](#Optional:-FashionMNIST)
# 8. [Bonus: how to fool each metric](#Bonus:-how-to-fool-each-metric)
#
# As before, fill in each cell that says `# YOUR CODE HERE` and run the test cell after it: it
# prints a line starting with `PASS`, or names the most likely mistake. The training cells are
# not graded and never run by the autograder; the graded exercises need no trained model.

# %%
import os
from dataclasses import replace

import matplotlib.pyplot as plt
import torch as t

import w3d4_classifier as classifier_lib
import w3d4_digits as digits
import w3d4_test
from builtin_unet import BuiltinUnet
from w3d4_my_unet import load_my_unet

MAIN = __name__ == "__main__"

# %% [markdown]
# ## Your Unet
#
# The next cell looks for your part 2 notebook, runs the cells that define your classes (not the
# tests, not the demos), and checks that your `Unet` turns a batch of 8x8 digits into a batch of the
# same shape. If it cannot find the notebook, or your `Unet` is not finished, it says why in one line
# and uses the course's reference `Unet` instead, the same architecture written with PyTorch's
# built-in layers, so that you can follow the rest of this lesson either way. If your part 2
# folder is somewhere else, change `PART2_NOTEBOOK`.

# %%
PART2_NOTEBOOK = "../w3d4_part2/w3d4_part2_unet.ipynb"
my_model = None  # the Unet you train below, if you do
if MAIN:
    Unet, unet_source = load_my_unet(PART2_NOTEBOOK)
    trainset, heldout = digits.load_digits_split()  # (1597, 1, 8, 8) and (200, 1, 8, 8), in [-1, 1]

# %% [markdown]
# ## Training on the digits
#
# The data are the 1,797 handwritten digits that ship with scikit-learn (8x8 pixels, nothing to
# download), scaled to `[-1, 1]`; 200 of them are held out and never used for training. The
# network is your `Unet` with a narrow configuration (16 channels, two levels) and a schedule of
# 200 noise steps. The training loop and the sampler are part 1's.
#
# Training stops after `TRAIN_BUDGET_S` seconds. Four minutes on a 2-core laptop give recognisable
# digits; on a GPU the whole schedule of 200 epochs takes seconds. These cells are tagged so that
# the autograder skips them.

# %% tags=["skip-when-grading"]
# Seconds of training; raise it for better samples. (The course's own test runs set W3D4_TRAIN_BUDGET_S.)
TRAIN_BUDGET_S = float(os.environ.get("W3D4_TRAIN_BUDGET_S", 240))
if MAIN:
    t.manual_seed(0)
    my_model = digits.build_unet(Unet).to(digits.default_device())
    config = replace(digits.TRAIN_CONFIG, time_budget_s=TRAIN_BUDGET_S)
    log = digits.train_digits(my_model, trainset, config)
    print(f"{unet_source}: {len(log.losses)} optimiser steps in {log.seconds:.0f} s")
    digits.plot_losses(log.losses)
    plt.show()

# %% [markdown]
# Forty samples, each drawn from pure noise in 200 denoising steps, beside forty held-out digits.

# %% tags=["skip-when-grading"]
if MAIN and my_model is not None:
    my_samples = digits.sample_digits(my_model, 40)
    digits.plot_samples(my_samples, heldout)
    plt.show()

# %% [markdown]
# And what the network learnt about one digit: noised by more and more steps (top), and the clean
# image that its predicted noise implies, in one step (bottom).

# %% tags=["skip-when-grading"]
if MAIN and my_model is not None:
    digits.plot_denoising(*digits.denoise_demo(my_model, heldout[0]))
    plt.show()

# %% [markdown]
# ## A classifier as a measuring instrument
#
# Pixels are a poor place to compare images: shift a digit by one pixel and it is far from itself.
# A classifier trained to recognise digits has learnt a better representation, one where two
# images of a "3" written slightly differently land close together. FID uses Inception v3 trained
# on ImageNet; for 8x8 digits, a tiny CNN does the same job. The course ships one, trained on the
# training split only (so the held-out digits are as new to it as to your Unet), with its weights
# checked against a SHA-256 checksum when they load.
#
# From it we take two things for a batch of images:
#
# - the **features**: the activations of its last hidden layer, `(n, 32)`, what the classifier
#   "sees" just before deciding;
# - the **class probabilities** `p(y | x)`: `(n, 10)`, rows that sum to 1.

# %%
if MAIN:
    classifier = classifier_lib.load_classifier()
    record = classifier.record
    print(f"classifier accuracy: {record['train_accuracy']:.3f} on the training digits, "
          f"{record['heldout_accuracy']:.3f} on the held-out digits")
    train_features = classifier.feature_matrix(trainset)  # (1597, 32), float64
    print("features of the training digits:", tuple(train_features.shape))

# %% [markdown]
# <a id="frechet-distance"></a>
# ## The Fréchet distance
#
# Summarise each set of features by a Gaussian: its mean `mu` (a vector of `d` numbers) and its
# covariance `C` (a `d x d` matrix). The Fréchet distance between the two Gaussians (also called
# the 2-Wasserstein distance) has a closed form:
#
# $$ d^2 = \lVert \mu_a - \mu_b \rVert^2 + \operatorname{tr}\left(C_a + C_b - 2\,(C_a C_b)^{1/2}\right) $$
#
# The first term compares where the two clouds of features sit, the second how they spread. FID is
# exactly this number (the squared distance, with no square root around it) computed on Inception
# features; lower is better, and 0 means the two Gaussians are identical.
#
# Implement `frechet_distance`. Some things to know:
#
# - Rows are images and columns are features. `torch.cov` and `np.cov` treat each *row* as a
#   variable, so pass them `features.T`. Dividing by `n - 1` (their default) or by `n` both pass.
# - `(C_a C_b)^{1/2}` is a *matrix* square root: a matrix `S` with `S @ S = C_a @ C_b`.
#   `torch.sqrt` would take the square root of each entry instead. You can use
#   `scipy.linalg.sqrtm` (keep its `.real` part: rounding can leave a tiny imaginary part), or note
#   that you only need its trace, which is the sum of the square roots of the eigenvalues of
#   `C_a @ C_b`. Those eigenvalues are real and non-negative in exact arithmetic; in floating point,
#   clamp them at 0.
# - Work in float64 throughout (the test recognises a result computed in float32) and return a
#   Python float (or a 0-dimensional tensor).
#
# <details>
# <summary>Hint: the eigenvalues of C_a C_b</summary>
#
# `t.linalg.eigvals(cov_a @ cov_b)` returns complex numbers whose imaginary parts are rounding
# noise: take `.real`, clamp at 0, then `sqrt` and `sum`. A route that stays in real symmetric
# matrices: with `s = C_a^{1/2}` (from `t.linalg.eigh`), `C_a C_b` has the same eigenvalues as
# `s @ C_b @ s`, which is symmetric, so `t.linalg.eigvalsh` applies.
# </details>

# %% nbgrader={"grade_id": "frechet_distance"}
def frechet_distance(features_a: t.Tensor, features_b: t.Tensor) -> float:
    """The squared Fréchet distance between Gaussians fitted to two sets of features.

    features_a: (n_a, dims) float64, one row per image; features_b: (n_b, dims) float64.
    Returns ||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)) as a float.
    """
    ### BEGIN SOLUTION
    mu_a, mu_b = features_a.mean(dim=0), features_b.mean(dim=0)
    cov_a, cov_b = t.cov(features_a.T), t.cov(features_b.T)  # (dims, dims)
    # tr((C_a C_b)^(1/2)) = sum of the square roots of the eigenvalues of C_a C_b, which are real and
    # >= 0 in exact arithmetic: rounding leaves tiny imaginary parts and tiny negative values.
    eigenvalues = t.linalg.eigvals(cov_a @ cov_b).real.clamp(min=0)
    trace_sqrt = eigenvalues.sqrt().sum()
    distance = ((mu_a - mu_b) ** 2).sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return distance.item()
    ### END SOLUTION


# %% nbgrader={"grade_id": "test_frechet_distance", "points": 3}
if MAIN:
    w3d4_test.test_frechet_distance(frechet_distance)

# %% [markdown]
# A quick sanity check on features you can reason about: two Gaussian clouds with the same
# covariance, whose means are 3 apart, are at squared distance 9 (up to sampling noise).

# %%
if MAIN:
    cloud = t.randn(5000, 2, dtype=t.float64, generator=t.Generator().manual_seed(0))
    shifted = cloud + t.tensor([3.0, 0.0], dtype=t.float64)
    print(f"d^2 = {frechet_distance(cloud, shifted):.3f} (expected 9)")

# %% [markdown]
# ## The classifier score
#
# The Inception Score looks at the classifier's probabilities instead of its features. A good set
# of samples should make the classifier *confident* about each image (each `p(y | x)` is peaked)
# and *diverse* as a whole (the average over the set, `p(y) = mean over x of p(y | x)`, is spread
# over all classes). One number rewards both:
#
# $$ \text{score} = \exp\Big( \frac{1}{n} \sum_{i=1}^{n} \mathrm{KL}\big(p(y \mid x_i) \,\Vert\, p(y)\big) \Big),
# \qquad \mathrm{KL}(p \Vert q) = \sum_y p_y \log \frac{p_y}{q_y} $$
#
# with natural logarithms. It runs from 1 (every image gets the same prediction) to the number of
# classes (every image is classified with certainty, and the classes are equally used); higher is
# better. We call it the *classifier score* here, since our classifier is not Inception.
#
# Implement `classifier_score`. Some probabilities may be exactly 0: by convention `0 log 0 = 0`,
# and `t.xlogy(p, q)` computes `p * log(q)` with exactly that convention. Work in float64 here too.

# %% nbgrader={"grade_id": "classifier_score"}
def classifier_score(probs: t.Tensor) -> float:
    """exp of the mean KL divergence from the marginal p(y) to each p(y | x).

    probs: (n, classes) float64, p(y | x) for each image, rows summing to 1.
    Returns the score as a float, between 1 and the number of classes.
    """
    ### BEGIN SOLUTION
    marginal = probs.mean(dim=0, keepdim=True)  # p(y): (1, classes)
    kl = (t.xlogy(probs, probs) - t.xlogy(probs, marginal)).sum(dim=1)  # one KL per image: (n,)
    return kl.mean().exp().item()
    ### END SOLUTION


# %% nbgrader={"grade_id": "test_classifier_score", "points": 2}
if MAIN:
    w3d4_test.test_classifier_score(classifier_score)

# %% [markdown]
# ## Comparing four sets of images
#
# Numbers mean little alone, so we score four sets of 200 images against the features of the
# training digits:
#
# - **samples** of a trained Unet: yours if you trained it above, otherwise the course's trained
#   weights, loaded into the course's Unet (that takes a second, so this section runs even where
#   nobody trains);
# - **held-out digits**: real digits neither network saw, the best a model could hope for;
# - **untrained**: samples of the same Unet before training;
# - **noise**: Gaussian noise clipped to `[-1, 1]`.
#
# Beside the two new measures is the measure from part 2: the mean distance from each image to its
# nearest training digit, in pixels. For a good model, all three put the samples next to the
# held-out digits and far from noise. Drawing 400 digits takes about twenty seconds on a CPU (the
# autograder skips these two cells).

# %%
N_EVAL = 200


def quality_table(model, unet_class, classifier, trainset, heldout, n=N_EVAL) -> dict[str, dict[str, float]]:
    """name -> {"FD": ..., "score": ..., "nearest": ...} for the four sets of n images, with your
    frechet_distance and classifier_score."""
    sets = {
        "samples": digits.sample_digits(model, n),
        "held-out digits": heldout[:n],
        "untrained": digits.untrained_samples(unet_class, n),
        "noise": digits.clipped_noise(n),
    }
    reference = classifier.feature_matrix(trainset)
    return {
        name: {
            "FD": frechet_distance(classifier.feature_matrix(images), reference),
            "score": classifier_score(classifier.probabilities(images)),
            "nearest": digits.nearest_neighbour_distance(images, trainset),
        }
        for name, images in sets.items()
    }


def print_table(table: dict[str, dict[str, float]]) -> None:
    print(f"{'':<18}{'FD (lower is better)':>22}{'score (1 to 10)':>17}{'nearest digit (L2)':>20}")
    for name, row in table.items():
        print(f"{name:<18}{row['FD']:>22.2f}{row['score']:>17.2f}{row['nearest']:>20.2f}")


# %% tags=["skip-when-grading"]
if MAIN:
    if my_model is None:  # nobody trained above: the course's trained weights
        eval_class, eval_model = BuiltinUnet, digits.build_unet(BuiltinUnet)
        digits.load_checkpoint(eval_model, verbose=False)
    else:
        eval_class, eval_model = Unet, my_model
    table = quality_table(eval_model, eval_class, classifier, trainset, heldout)
    print_table(table)

# %% tags=["skip-when-grading"]
if MAIN:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    names = list(table)
    colours = ["#1f4e8c", "#5a9e4b", "#c9822b", "#9a9a9a"]
    axes[0].bar(names, [table[n]["FD"] for n in names], color=colours)
    axes[0].set(yscale="log", title="Fréchet distance to the training digits (log scale)")
    axes[1].bar(names, [table[n]["score"] for n in names], color=colours)
    axes[1].set(ylim=(1, 10), title="classifier score")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=15)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# Two things to notice. First, even the held-out digits are not at distance 0: 200 images only
# estimate a mean and a covariance, and the estimate is biased upwards for small sets. That is why
# FIDs are only comparable when computed with the same number of images and the same reference
# set (papers use 50,000). Second, the score of the held-out digits is close to, but below, 10:
# the digits are balanced over the classes and the classifier is confident about most of them.
#
# ## Optional: FashionMNIST
#
# If you have a network connection and some patience, the same pipeline works on FashionMNIST:
# 70,000 pictures of clothes, 28x28 pixels, 10 classes. `w3d4_fashion.py` reads its four IDX files
# (the format the dataset ships in, and exactly what `torchvision.datasets.FashionMNIST` reads),
# checking each file's magic number and size; nothing downloads unless you call
# `download_fashion_mnist`. Downscaled to 16x16 it trains in tens of minutes on a CPU (attention
# over 784 pixels at full size is slow); to measure it, you would train a classifier on it first,
# as the course did for the digits.

# %%
USE_FASHION = False  # set to True to download (about 30 MB) and look at FashionMNIST
if MAIN and USE_FASHION:
    import w3d4_fashion

    w3d4_fashion.download_fashion_mnist("fashion_mnist")
    fashion_images, fashion_labels = w3d4_fashion.load_fashion_mnist("fashion_mnist", "train")
    small_fashion = w3d4_fashion.downscale(fashion_images[:5000], 16)  # (5000, 1, 16, 16)
    digits.plot_samples(small_fashion[:32])
    plt.show()

# %% [markdown]
# ## Bonus: how to fool each metric
#
# Every metric is a proxy, and a model (or a person tuning one) that optimises the proxy can
# score well while failing at what we care about. Three cheap tricks:
#
# 1. **Memorise the training set.** Returning training images gives an excellent FD and score,
#    and zero creativity. FD against the *training* features cannot tell; that is what the
#    nearest-neighbour distance of part 2 checks (copies sit at distance 0 from their originals).
# 2. **One perfect image per class.** The score only asks that each image be classified with
#    certainty and that the classes be balanced. Ten images repeated over and over do that; FD,
#    which sees the spread of the features, is not fooled.
# 3. **Match two moments.** FD only sees a mean and a covariance. Any distribution with the same
#    two moments in feature space scores 0, however unlike digits it is. Below, features drawn from
#    a Gaussian with exactly the training features' mean and covariance (so not images at all)
#    score better than the real held-out digits. (Not 0: 200 draws estimate the two moments only
#    roughly.) A generator trained against FD directly could learn to exploit exactly this.

# %%
if MAIN:
    memorised = trainset[:N_EVAL]
    per_class = classifier_lib.digits_labels_split()[0]
    one_each = t.stack([trainset[per_class == digit][0] for digit in range(10)])  # (10, 1, 8, 8)
    repeated = one_each.repeat(N_EVAL // 10, 1, 1, 1)
    mean, cov = train_features.mean(0), t.cov(train_features.T)
    gaussian = t.distributions.MultivariateNormal(mean, covariance_matrix=cov + 1e-9 * t.eye(len(mean)))
    t.manual_seed(0)
    fake_features = gaussian.sample((N_EVAL,))
    sets = {"held-out digits (for reference)": heldout, "memorised training digits": memorised,
            "one digit per class, repeated": repeated}
    for name, images in sets.items():
        fd_value = frechet_distance(classifier.feature_matrix(images), train_features)
        score_value = classifier_score(classifier.probabilities(images))
        nearest = digits.nearest_neighbour_distance(images, trainset)
        print(f"{name:<32} FD {fd_value:7.2f}   score {score_value:5.2f}   nearest digit {nearest:5.2f}")
    print(f"{'Gaussian with matched moments':<32} FD {frechet_distance(fake_features, train_features):7.2f}")

# %% [markdown]
# This is why papers report several measures side by side, compute FD against a held-out test
# set as well as the training set, look at nearest neighbours, and still show samples. For your
# own work: decide what "good" means before choosing the number that stands for it.
