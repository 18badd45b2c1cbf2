# Generated from checks/w3d4_test.py by `python -m grader build`: edit that file, not this one.
"""The tests of W3D4, diffusion models: part 1 (diffusion from scratch), part 2 (the DDPM U-Net) and
part 3 (measuring generative models), each part in its lesson's order.

Each test cell calls one of these with the class or function you wrote, for example
`test_groupnorm(GroupNorm, affine=True)`. A test prints one line starting with PASS, or fails with
a message that names the most likely mistake and how to fix it. The tests never compare with a
copy of the solution: they compare with torch's built-ins or float64 formulas where the lesson
fixes the result, and otherwise check what every correct answer does. Images are not square (height != width), so that a
mix-up of the two shows.

How each test decides is in the package beside this file, `w3d4_checks` (one module per
exercise). `seed` changes every input; the autograder uses seeds of its own.
"""

from __future__ import annotations

from w3d4_checks import SEED, run_check

CHECKS_DRIVER = True  # its frames are not the student's code (see w3d4_checks.probing)


class TestFailed(AssertionError):
    """A failed test. Jupyter shows its message alone, without a traceback through the checks."""

    __test__ = False  # not a pytest test class, whatever its name

    def _render_traceback_(self) -> list[str]:
        return [f"FAIL {self}"]


def _check(name: str, *subjects, seed: int, **call) -> None:
    """Run the check of exercise `name`; print the PASS line or raise TestFailed."""
    arguments = ", ".join(f"{key}={value}" for key, value in call.items())
    label = f"test_{name}({arguments})" if arguments else f"test_{name}"
    try:
        summary = run_check(name, *subjects, seed=seed, **call)
    except AssertionError as failure:
        raise TestFailed(f"{label}: {failure}") from None
    print(f"PASS {label}: {summary}")


# --- part 1: diffusion from scratch ---


def test_normalize_img(normalize_img, denormalize_img, seed: int = SEED) -> None:
    """normalize_img maps [0, 1] onto [-1, 1] (2x - 1) and denormalize_img maps it back ((x + 1) / 2)."""
    _check("normalize_img", normalize_img, denormalize_img, seed=seed)


def test_linear_schedule(linear_schedule, seed: int = SEED) -> None:
    """linear_schedule(max_steps, min_noise, max_noise) returns max_steps betas evenly spaced from
    min_noise to max_noise, both included; the defaults are DDPM's 1e-4 and 0.02."""
    _check("linear_schedule", linear_schedule, seed=seed)


def test_q_eq2(q_eq2, seed: int = SEED) -> None:
    """q_eq2(x, n, betas) applies n steps of equation 2 with betas[0]..betas[n-1]: over many pixels its
    output is distributed as sqrt(alpha_bar) x + N(0, 1 - alpha_bar), whatever order you draw noise in."""
    _check("q_eq2", q_eq2, seed=seed)


def test_q_eq4(q_eq4, seed: int = SEED) -> None:
    """q_eq4(x, n, betas) has the same distribution as q_eq2, in one step (equation 4), with
    alpha_bar the product of (1 - beta) over steps 1..n."""
    _check("q_eq4", q_eq4, seed=seed)


def test_noise_schedule(NoiseSchedule, seed: int = SEED) -> None:
    """NoiseSchedule(max_steps) holds DDPM's linear schedule in the buffers betas, alphas and alpha_bars;
    beta/alpha/alpha_bar(s) read index s - 1 (steps count from 1), keep the shape of a tensor of steps
    and raise IndexError outside 1..max_steps."""
    _check("noise_schedule", NoiseSchedule, seed=seed)


def test_noise_img(noise_img, NoiseSchedule, seed: int = SEED) -> None:
    """noise_img returns int64 steps uniform on 1..max_steps, standard Gaussian noise, and noised images
    equal to sqrt(alpha_bar) img + sqrt(1 - alpha_bar) noise for the steps and noise it returns."""
    _check("noise_img", noise_img, NoiseSchedule, seed=seed)


def test_reconstruct(reconstruct, NoiseSchedule, seed: int = SEED) -> None:
    """reconstruct solves equation 4 for the clean image: (noisy - sqrt(1 - alpha_bar) noise) / sqrt(alpha_bar)."""
    _check("reconstruct", reconstruct, NoiseSchedule, seed=seed)


def test_tiny_diffuser(TinyDiffuser, seed: int = SEED) -> None:
    """TinyDiffuser is a DiffusionModel whose output has the images' shape, changes with the steps, and
    treats each image of a batch on its own; every parameter gets a gradient."""
    _check("tiny_diffuser", TinyDiffuser, seed=seed)


def test_train_loop(train, TrainConfig, seed: int = SEED) -> None:
    """train, run on a recording stand-in model: batches of the configured size each epoch, images noised
    by noise_img with int64 steps in 1..max_steps, the MSE against the added noise logged at every
    optimiser step, parameters updated, on_step called, the schedule attached, the time budget kept."""
    _check("train_loop", train, TrainConfig, seed=seed)


def test_ddpm_sample(sample, NoiseSchedule, seed: int = SEED) -> None:
    """sample follows Algorithm 2 on stand-in models that predict a known noise: steps T..1, each step's
    mean exact, noise of variance beta_t or the posterior variance (both are accepted), none at the last
    step, the same images for the same seed, and all T + 1 batches with return_all_steps."""
    _check("ddpm_sample", sample, NoiseSchedule, seed=seed)


# --- part 2: the U-Net ---


def test_groupnorm(GroupNorm, affine: bool = True, seed: int = SEED) -> None:
    """GroupNorm(num_groups, num_channels, eps, affine) equals F.group_norm for one group, some groups
    and one group per channel, with eps inside the square root and the biased variance; with
    affine=True it has a weight and a bias of shape (num_channels,), applied per channel."""
    _check("groupnorm", GroupNorm, seed=seed, affine=affine)


def test_sinusoidal_embeddings(SinusoidalPositionEmbeddings, seed: int = SEED) -> None:
    """SinusoidalPositionEmbeddings(embedding_size) maps int64 steps (batch,) to (batch, embedding_size):
    sin and cos of step * frequency, frequencies 1 / 10000^(2k/d). Any order of the columns passes."""
    _check("sinusoidal_embeddings", SinusoidalPositionEmbeddings, seed=seed)


def test_swish(swish, SiLU, seed: int = SEED) -> None:
    """swish(x) and SiLU()(x) both equal x * sigmoid(x), shape kept, also for inputs as large as +-100
    (where a formula with exp(-x) overflows)."""
    _check("swish", swish, SiLU, seed=seed)


def test_self_attention(SelfAttention, seed: int = SEED) -> None:
    """SelfAttention(channels, num_heads=4) on (batch, channels, height, width) is multi-head scaled
    dot-product attention over the pixels, with projections for queries, keys, values and the output.
    The test sets your projections to values of its own, whatever you called them, and accepts any
    way of splitting and merging the heads that computes the same thing."""
    _check("self_attention", SelfAttention, seed=seed)


def test_attention_block(AttentionBlock, seed: int = SEED) -> None:
    """AttentionBlock(channels) returns x + SelfAttention(GroupNorm with 1 group (x)), with 4 heads."""
    _check("attention_block", AttentionBlock, seed=seed)


def test_residual_block(ResidualBlock, seed: int = SEED) -> None:
    """ResidualBlock(input_channels, output_channels, step_dim, groups): output shape, parameter count
    (a 1x1 shortcut conv only when the channels change), the step embedding added between the two
    convolutions, and the shortcut present. Each example in a batch is processed on its own."""
    _check("residual_block", ResidualBlock, seed=seed)


def test_down_block(DownBlock, downsample: bool = True, seed: int = SEED) -> None:
    """DownBlock(channels_in, channels_out, time_emb_dim, groups, downsample) returns (output, skip): the
    skip at full size, the output halved when downsample is True; parameter count; step embedding used."""
    _check("down_block", DownBlock, seed=seed, downsample=downsample)


def test_up_block(UpBlock, upsample: bool = True, seed: int = SEED) -> None:
    """UpBlock(dim_in, dim_out, time_emb_dim, groups, upsample) takes (x, step_emb, skip), concatenates
    x and skip, and returns dim_in channels, at double size when upsample is True; parameter count;
    the step embedding and the skip both used."""
    _check("up_block", UpBlock, seed=seed, upsample=upsample)


def test_mid_block(MidBlock, seed: int = SEED) -> None:
    """MidBlock(mid_dim, time_emb_dim, groups) keeps the shape, has the parameters of residual block,
    attention block, residual block, runs them in that order, and uses the step embedding."""
    _check("mid_block", MidBlock, seed=seed)


def test_unet(Unet, seed: int = SEED) -> None:
    """Unet(image_shape, channels, dim_mults, groups, max_steps) is a DiffusionModel that maps images and
    int64 steps to images of the same shape, with the diagram's parameter count, and each image's
    output depends on its own number of steps."""
    _check("unet", Unet, seed=seed)


def test_conv_transpose2d(ConvTranspose2d, seed: int = SEED) -> None:
    """The bonus: your transposed convolution equals torch.nn.ConvTranspose2d for several kernel sizes,
    strides and paddings (bias included)."""
    _check("conv_transpose2d", ConvTranspose2d, seed=seed)


# --- part 3: train the U-Net and measure it ---


def test_frechet_distance(frechet_distance, seed: int = SEED) -> None:
    """frechet_distance(features_a (n_a, d), features_b (n_b, d)) equals ||mu_a - mu_b||^2 +
    tr(C_a + C_b - 2 (C_a C_b)^(1/2)) in float64 (relative error at most 1e-6), for sets of equal and
    unequal sizes and for a set against itself (0). Covariances divided by n or n - 1 both pass, and
    any correct matrix square root; a result computed in float32 is recognised and fails."""
    _check("frechet_distance", frechet_distance, seed=seed)


def test_classifier_score(classifier_score, seed: int = SEED) -> None:
    """classifier_score(probs (n, classes)) equals exp(mean over images of KL(p(y|x) || p(y))), with
    p(y) = probs.mean(0), natural logarithms and 0 log 0 = 0 (some probabilities are exactly 0)."""
    _check("classifier_score", classifier_score, seed=seed)


# pytest must not collect these: this file's name matches its pattern *_test.py.
for _test in (value for key, value in dict(globals()).items() if key.startswith("test_")):
    _test.__test__ = False
