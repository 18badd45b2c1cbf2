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
# # W3D4 part 2: the DDPM architecture
#
# In part 1 you trained a small denoiser. Today you build the network that the DDPM paper
# (Ho et al., 2020) actually used to predict noise: a U-Net with residual blocks, group
# normalisation, sinusoidal step embeddings and self-attention over image pixels. Its lineage is
# long (PixelCNN++, which borrows from U-Net and Wide ResNet, which borrow from others), and we
# will not chase every detail of the paper. We follow the diagrams below, and the test is simple:
# does the network train?
#
# You will write every new piece from scratch in PyTorch, then assemble them bottom-up.
#
# **How to work through this notebook.** Fill in each cell that says `# YOUR CODE HERE` and
# delete the `raise NotImplementedError()` line. The cell after each exercise runs tests from
# `w3d4_test`: each check prints one line starting with `PASS` when your code is right, and
# otherwise stops with a message naming the most likely mistake. A few test cells run two checks,
# one per setting, and print one PASS line for each: group norm with and without `affine`, the
# down block with and without downsampling, the up block with and without upsampling. Run the
# cells in order from the top. A failing check shows only its message, so read it first; to see
# what a check looks at, open `w3d4_test.py` beside this notebook: one short function per exercise,
# each with a docstring (how each decides is in the `w3d4_checks` folder, one file per exercise).
#
# The tests deliberately use images whose height differs from their width. With square images,
# code that mixes up height and width (in a `rearrange`, a `reshape` or a size it computes) still
# produces tensors of the right shape, and the mistake can go unnoticed; when the two sizes differ,
# it shows up as a wrong shape or wrong numbers.
#
# ## Contents
#
# 1. [The U-Net](#The-U-Net)
# 2. [The DDPM model](#The-DDPM-model) and its blocks: down, mid, up, residual, attention
# 3. [Group normalisation](#Group-normalisation)
# 4. [Sinusoidal step embeddings](#Sinusoidal-step-embeddings)
# 5. [The sigmoid linear unit](#The-sigmoid-linear-unit)
# 6. [Self-attention over two spatial dimensions](#Self-attention-over-two-spatial-dimensions)
# 7. [Transposed convolution](#Transposed-convolution)
# 8. [Assembling the U-Net](#Assembling-the-U-Net)
# 9. [Does it work?](#Does-it-work?)
# 10. [Bonus: a transposed convolution from scratch](#Bonus:-a-transposed-convolution-from-scratch)

# %% [markdown]
# ## The U-Net
#
# Our network has the overall shape of a U-Net. U-Net was designed for medical image
# segmentation: for every input pixel it predicts a label such as "tumour" or "healthy tissue".
# Like a ResNet it is built mostly from convolutions, but a ResNet classifier only needs one answer
# for the whole image, whereas a segmentation network must understand the global picture *and*
# answer at the resolution of single pixels. Predicting the noise in every pixel of an image is the
# same kind of task, which is why diffusion models adopted the design.
#
# <p align="center"><img src="w3d4_unet_architecture.svg" alt="The U-Net architecture"
# width="720"/></p>
#
# In the picture each grey rectangle is a tensor: its height stands for the spatial size (height
# and width are equal) and its width for the number of channels. Read it as three parts.
#
# - **Going down** (left): a few convolutions, then a downsampling step halves the height and
#   width. The channel count grows as the images shrink, so the work per layer stays roughly level.
# - **The middle**: a couple more convolutions at the smallest resolution.
# - **Going up** (right): each stage doubles the height and width with a *transposed
#   convolution* and concatenates the tensor saved at the same resolution on the way down (the
#   horizontal "skip" arrows). The skips hand fine detail straight across, so the bottleneck only
#   has to carry the global picture.
#
# A final 1x1 convolution maps to the number of output channels: one per class for
# segmentation, three for us, because we predict the noise in each colour channel of an RGB image.
#
# A transposed convolution also slides a kernel over its input, but its output is *larger* than
# its input: every input value stamps a scaled copy of the kernel onto the output, and overlapping
# stamps add up. (It is sometimes called a "deconvolution", a name that also means something
# quite different in signal processing, so we avoid it.) It computes exactly the backward pass of
# an ordinary convolution with respect to that convolution's input.
#
# <p align="center"><img src="w3d4_unet_trans_conv.png" alt="A transposed convolution"
# width="560"/></p>

# %% [markdown]
# ## The DDPM model
#
# The DDPM network keeps the three-part shape: on the way down the spatial size halves while the
# channels double, on the way up the spatial size doubles and the skips are concatenated. Nearly
# every component differs from the original U-Net, but people still call the class `Unet`.
#
# The new components are group normalisation, sinusoidal step embeddings, the SiLU
# nonlinearity and self-attention over pixels. You will implement each of them yourself; after
# that, wiring up the network is the kind of bookkeeping you have done many times already.
#
# There is one extra input. Besides a batch of images, the model receives, for every image, the
# number of noise steps that were applied to it (between 1 and 1000 in the paper). An integer of
# that range is a poor direct input to a network, so each one is embedded into a vector of size
# `emb`, giving a tensor of shape `(batch, emb)` that every block receives.
#
# This is the largest architecture of the course so far. The good news: small deviations from
# the diagrams rarely stop it from working.
#
# The overview below uses `C` for the channel count after the first convolution and `H` for the
# input height. Solid arrows carry images and are labelled `channels, height`; `emb` arrows carry
# the step embedding.
#
# <p align="center"><img src="w3d4_diagram_ddpm.svg" alt="The DDPM network: step embedding, input
# convolution, three down blocks, a mid block, two up blocks with skips, a residual block and a 1x1
# convolution"/></p>
#
# Three things to notice. The last down block does not downsample. There is one fewer up block
# than down blocks: the skip of the first down block is not used. And the output has the same shape
# as the input image, because the model predicts the noise in every pixel.

# %% [markdown]
# ### The down block
#
# A down block takes images of height `h` and returns two tensors: the *downsampled* output of
# height `h // 2`, which feeds the next block, and the full-size *skip* output, which waits for the
# matching up block. Halving an odd height would lose a row; the lesson's images always have even
# sizes where they are halved, and asserting it in your code is good practice (a tip: the tests only
# mention it).
#
# <p align="center"><img src="w3d4_diagram_downblock.svg" alt="The down block: two residual blocks,
# attention, then a 4x4 convolution with stride 2; the attention output is also the skip"/></p>
#
# When `downsample` is false (the last down block), the 4x4 convolution is left out and both
# outputs are the same full-size tensor.
#
# ### The mid block
#
# The mid block keeps the channel count and the size.
#
# <p align="center"><img src="w3d4_diagram_midblock.svg" alt="The mid block: residual block,
# attention block, residual block"/></p>
#
# ### The up block
#
# The first up block takes its skip from the last down block, the second from the second-to-last
# one, and so on: a stack that the down blocks push onto and the up blocks pop from keeps this
# straight. The sizes `c_in` and `c_out` below are those *of the matching down block*, so an up
# block goes from `c_out` back to `c_in`. It reads backwards, but the other convention is just as
# confusing.
#
# <p align="center"><img src="w3d4_diagram_upblock.svg" alt="The up block: concatenate the skip,
# two residual blocks, attention, then a 4x4 transposed convolution with stride 2"/></p>
#
# When `upsample` is false, the transposed convolution is left out.
#
# ### The residual block
#
# These blocks descend from ResNet's: a main branch plus a shortcut. The main branch runs two
# rounds of convolution, group norm and SiLU, and adds a projection of the step embedding in
# between. The shortcut is the identity, except when the channel count changes, where a 1x1
# convolution makes the shapes agree.
#
# <p align="center"><img src="w3d4_diagram_residualblock.svg" alt="The residual block: convolution,
# group norm and SiLU twice with the projected step embedding added in between, plus a
# shortcut"/></p>
#
# ### The attention block
#
# Normalise (one group), attend, and add the input back.
#
# <p align="center"><img src="w3d4_diagram_attentionblock.svg" alt="The attention block: group norm
# with one group, self-attention with 4 heads, plus the input"/></p>
#
# We start with the new low-level pieces and then build up to the whole network.
#
# **Setup.** The next cell imports what the lesson needs. You need Python 3.11 or newer and
# PyTorch 2.1 or newer: the tests read code objects' `co_qualname` (new in Python 3.11) and call
# `scaled_dot_product_attention` with its `scale` argument (new in PyTorch 2.1).

# %%
from typing import Optional, Union

import matplotlib.pyplot as plt
import torch as t
from einops import rearrange, repeat
from fancy_einsum import einsum
from torch import nn

import w3d4_test
from w3d4_part1_diffusion_training_solution import DiffusionModel

MAIN = __name__ == "__main__"

# %% [markdown]
# ## Group normalisation
#
# Layer normalisation, which you met in the transformer, computes one mean and one standard
# deviation per example, over all of its channels (the embedding dimensions).
#
# Group normalisation splits the channels into `num_groups` groups of adjacent channels and
# computes a mean and a standard deviation per example *and per group*, over the channels of the
# group and all pixels. With a single group it is a layer norm over `(channels, height, width)`.
# One practical difference: `GroupNorm` expects the channels right after the batch dimension, as
# PyTorch does for images, whereas `LayerNorm` normalises the last dimensions, as is usual for
# text.
#
# <p align="center"><img src="w3d4_unet_groupnorm.png" alt="Batch, layer, instance and group
# normalisation" width="720"/></p>
#
# Each block in the picture is one batch of activations with shape `(N, C, H*W)`; the shaded cells
# share one mean and one standard deviation. Group norm is drawn with two groups. Its statistics
# never mix examples, so it behaves the same for a batch of one as for a batch of a thousand, which
# matters for diffusion models that are often trained with small batches of large images. The
# [Group Normalization paper](https://arxiv.org/abs/1803.08494) explains why it helps.
#
# Implement `GroupNorm` so that it matches `torch.nn.GroupNorm` on a
# `(batch, channels, height, width)` tensor. (The built-in accepts any number of spatial
# dimensions; two are enough here.) Like the built-in, use the *biased* variance (divide by the
# number of elements, not one less), put `eps` inside the square root, and when `affine` is true
# keep one learnable `weight` and `bias` per channel, applied after normalising.
#
# <details>
# <summary>Hint: how do I compute the statistics per group?</summary>
#
# Use `rearrange` to split the channel dimension into a group dimension and a
# channels-within-group dimension: `"b (g c) h w -> b g c h w"`. Now reduce over the last three
# dimensions with `keepdim=True`, normalise, `rearrange` back to `b c h w`, and only then apply
# `weight` and `bias`, which have one entry per channel.
# </details>

# %% nbgrader={"grade_id": "groupnorm"}
class GroupNorm(nn.Module):
    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-05,
        affine: bool = True,
        device: Optional[Union[t.device, str]] = None,
        dtype: Optional[t.dtype] = None,
    ) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        if num_channels % num_groups != 0:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(t.empty(num_channels, device=device, dtype=dtype))
            self.bias = nn.Parameter(t.empty(num_channels, device=device, dtype=dtype))
            self.reset_parameters()
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        ### END SOLUTION

    def reset_parameters(self) -> None:
        """Initialize the weight and bias, if applicable."""
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: t.Tensor) -> t.Tensor:
        """Apply normalization to each group of channels.

        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        ### BEGIN SOLUTION
        grouped = rearrange(x, "b (g c) h w -> b g c h w", g=self.num_groups)
        centred = grouped - grouped.mean(dim=(2, 3, 4), keepdim=True)
        # The biased variance, written out: the mean squared deviation. (Tensor.var computes the
        # same number with a slower algorithm on CPU.)
        var = (centred**2).mean(dim=(2, 3, 4), keepdim=True)
        normed = rearrange(centred / t.sqrt(var + self.eps), "b g c h w -> b (g c) h w")
        if self.affine:
            normed = normed * rearrange(self.weight, "c -> c 1 1") + rearrange(self.bias, "c -> c 1 1")
        return normed
        ### END SOLUTION


# %% nbgrader={"grade_id": "test_groupnorm", "points": 2}
if MAIN:
    w3d4_test.test_groupnorm(GroupNorm, affine=False)
    w3d4_test.test_groupnorm(GroupNorm, affine=True)

# %% [markdown]
# ## Sinusoidal step embeddings
#
# GPT and BERT learn a vector for every position during training. The original transformer
# instead fixed the mapping to sines and cosines of different frequencies, which saves parameters
# and works about as well. For us the "position" is the number of noise steps: the network needs
# it to know how much noise to expect, because the noise grows with the number of steps.
#
# For an embedding of even size $d$ there are $d/2$ frequencies
# $$\omega_k = \frac{1}{10000^{2k/d}}, \qquad k = 0, 1, \dots, d/2 - 1,$$
# and the embedding of step $s$ holds $\sin(\omega_k s)$ and $\cos(\omega_k s)$ for every $k$. The
# first pairs turn quickly with $s$, the last ones barely move, a bit like the hands of a clock.
# Because $\sin(\omega(s+j))$ and $\cos(\omega(s+j))$ are a rotation of $\sin(\omega s)$ and
# $\cos(\omega s)$, a fixed linear map can express "the step $j$ further on", whatever $s$ is.
# Amirhossein Kazemnejad's
# [post on positional encoding](https://kazemnejad.com/blog/transformer_architecture_positional_encoding/)
# develops this intuition; its Figures 2 and 3 are the two plots you will reproduce below.
#
# Implement `SinusoidalPositionEmbeddings`: the constructor takes the embedding size (even), and
# `forward` maps a batch of step counts of shape `(batch,)` to `(batch, embedding_size)`.
#
# <details>
# <summary>Hint: what goes in the constructor and what in forward?</summary>
#
# The $d/2$ frequencies depend only on the embedding size, so compute them once in the constructor
# and store them with `self.register_buffer`: a buffer moves with `.to(device)` but is not a
# trainable parameter. In `forward`, take the outer product of the steps and the frequencies,
# giving `(batch, d/2)` angles, and apply `sin` and `cos`. You may interleave the results (stack
# along a new last axis, then `rearrange(..., "b k two -> b (k two)")`) or simply concatenate all
# the sines followed by all the cosines.
# </details>
#
# **Question.** Does the order of the dimensions (channels) of the embedding matter? Think about
# it before opening the answer.
#
# <details>
# <summary>Answer: does the order matter?</summary>
#
# Not for a model trained from scratch. The embedding goes straight into a linear layer, and a
# linear layer multiplies each input channel by its own column of weights and sums. Permute the
# channels and the matching columns of the weights, and you get exactly the same output; training
# simply finds the permuted weights. So interleaved, concatenated, or cosines first: all are
# equally good.
#
# The order does matter in two situations. To load pretrained weights, you must produce the
# channels in the order that the weights were trained with. And an operation that treats
# neighbouring channels together (such as the group normalisation you just wrote, which groups
# *adjacent* channels) would give a different result under a permutation. Neither applies to our
# embedding today, so choose whichever order you like.
# </details>

# %% nbgrader={"grade_id": "sinusoidal_embeddings"}
class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        ### BEGIN SOLUTION
        if embedding_size % 2 != 0:
            raise ValueError(f"embedding_size must be even, got {embedding_size}")
        self.embedding_size = embedding_size
        k = t.arange(embedding_size // 2, dtype=t.float32)
        self.register_buffer("frequencies", 1.0 / 10000 ** (2 * k / embedding_size))
        ### END SOLUTION

    def forward(self, x: t.Tensor) -> t.Tensor:
        """
        x: shape (batch, ) - for each batch element, the number of noise steps
        Out: shape (batch, embedding_size)
        """
        ### BEGIN SOLUTION
        angles = einsum("batch, freq -> batch freq", x.float(), self.frequencies)
        return rearrange(t.stack([angles.sin(), angles.cos()], dim=-1), "b k two -> b (k two)")
        ### END SOLUTION


# %% nbgrader={"grade_id": "test_sinusoidal_embeddings", "points": 1}
if MAIN:
    w3d4_test.test_sinusoidal_embeddings(SinusoidalPositionEmbeddings)

# %% [markdown]
# Now reproduce the two figures. Embed the steps 0, 1, ..., 49 with an embedding size of 128.
#
# 1. Show the `(50, 128)` embedding matrix as a heatmap (`plt.imshow` or `plt.pcolormesh`):
#    steps on the vertical axis, embedding dimensions on the horizontal one.
# 2. Show the `(50, 50)` matrix of dot products between every pair of embeddings.
#
# Label both axes and add a colour bar to each plot. What do you expect the second plot to show
# along its diagonal, and how should the dot product change as two steps move apart?

# %% nbgrader={"grade_id": "plot_embeddings"}
if MAIN:
    ### BEGIN SOLUTION
    steps = t.arange(50)
    embeddings = SinusoidalPositionEmbeddings(128)(steps)

    fig, ax = plt.subplots(figsize=(9, 4))
    image = ax.imshow(embeddings, cmap="RdBu", aspect="auto", vmin=-1, vmax=1)
    ax.set(xlabel="embedding dimension", ylabel="number of noise steps",
           title="Sinusoidal embeddings of steps 0 to 49 (size 128)")
    fig.colorbar(image, ax=ax, label="value")
    plt.show()

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    image = ax.imshow(embeddings @ embeddings.T, cmap="viridis")
    ax.set(xlabel="number of noise steps", ylabel="number of noise steps",
           title="Dot products between step embeddings")
    fig.colorbar(image, ax=ax, label="dot product")
    plt.show()
    ### END SOLUTION

# %% [markdown]
# <details>
# <summary>What the plots show</summary>
#
# In the heatmap the left columns (high frequencies) flicker from one step to the next, while the
# right columns change so slowly that they look constant over 50 steps. In the dot-product matrix
# the diagonal is the largest value, 64 (each of the 64 sine-cosine pairs contributes
# $\sin^2 + \cos^2 = 1$), and the values fall off smoothly with the distance between the two steps,
# symmetrically on both sides: nearby steps get similar embeddings, and the similarity depends on
# the distance, not on where you are.
# </details>

# %% [markdown]
# ## The sigmoid linear unit
#
# The sigmoid linear unit (SiLU) is applied elementwise: $\mathrm{SiLU}(x) = x \cdot
# \sigma(x)$, where $\sigma$ is the logistic sigmoid. The same function is also called *Swish*;
# the two names mean exactly the same thing. It looks like a ReLU with a smooth corner and a small
# dip below zero for negative inputs. As with most new activations, its authors report better
# benchmark results than ReLU, and nobody fully understands why
# ([Ramachandran et al., 2017](https://arxiv.org/abs/1710.05941)).
#
# Implement `swish` (without calling `torch.nn.functional.silu`, of course), and then plot it on the
# interval `[-5, 5]`.

# %% nbgrader={"grade_id": "swish"}
def swish(x: t.Tensor) -> t.Tensor:
    ### BEGIN SOLUTION
    return x * t.sigmoid(x)
    ### END SOLUTION


class SiLU(nn.Module):
    def forward(self, x: t.Tensor) -> t.Tensor:
        return swish(x)


# %% nbgrader={"grade_id": "test_swish", "points": 1}
if MAIN:
    w3d4_test.test_swish(swish, SiLU)

# %% nbgrader={"grade_id": "plot_silu"}
if MAIN:
    ### BEGIN SOLUTION
    xs = t.linspace(-5, 5, 201)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(xs, swish(xs), label="SiLU(x) = x * sigmoid(x)")
    ax.plot(xs, xs.clamp(min=0), linestyle="--", color="grey", label="ReLU(x), for comparison")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set(xlabel="x", ylabel="activation", title="The sigmoid linear unit (Swish)")
    ax.legend()
    plt.show()
    ### END SOLUTION

# %% [markdown]
# ## Self-attention over two spatial dimensions
#
# Your transformer attended along one sequence dimension. An image has two, height and width.
# Every pixel is a token whose features are its channels, and every pixel attends to every pixel
# of the same image, so the cost grows with the square of the number of pixels. Large models
# therefore often keep attention to their low resolutions, where there are few pixels. The `Unet`
# of this lesson keeps it simple and has an attention block in every down block, in the mid block
# and in every up block, as the diagrams show.
#
# Implement multi-head self-attention on `(batch, channels, height, width)` tensors, with no
# causal mask. The usual recipe, per head: project each pixel to a query, a key and a value, take
# the scaled dot products of queries with keys, softmax over the keys, and average the values with
# those weights; then merge the heads and apply an output projection.
#
# A few facts to build on, where `head_size = channels // num_heads`:
#
# - the projections act on each pixel's channels: `nn.Linear` layers on the flattened pixels, or
#   1x1 `nn.Conv2d` layers on the image, with or without biases. Separate query, key and value
#   projections and one fused projection to `3 * channels` that you split are both fine, and so
#   is any attribute name;
# - each head works on `head_size` of the projected channels; the usual split is
#   `rearrange(q, 'b s (n e) -> b n s e', n=num_heads)`, and the heads are merged back with the same
#   pattern before the output projection;
# - scale the dot products by `1 / sqrt(head_size)`.
#
# The test sets your projection layers to weights of its own, in the order your code first uses
# them, and checks the output against every way of reading them as queries, keys, values and output.
#
# <details>
# <summary>Hint: how do I handle two spatial dimensions?</summary>
#
# The simplest route is to reuse your sequence code: `rearrange` the image to
# `(batch, height * width, channels)` so that the pixels form one sequence, attend, and
# `rearrange` back at the end. Alternatively, 1x1 convolutions act on each pixel's channels
# directly, so they can play the part of the linear projections without any reshaping.
# </details>

# %% nbgrader={"grade_id": "self_attention"}
class SelfAttention(nn.Module):
    def __init__(self, channels: int, num_heads: int = 4):
        """Self-Attention with two spatial dimensions.

        channels: the number of channels. Should be divisible by the number of heads.
        """
        super().__init__()
        ### BEGIN SOLUTION
        if channels % num_heads != 0:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        self.channels = channels
        self.num_heads = num_heads
        self.head_size = channels // num_heads
        self.W_Q = nn.Linear(channels, channels)
        self.W_K = nn.Linear(channels, channels)
        self.W_V = nn.Linear(channels, channels)
        self.W_O = nn.Linear(channels, channels)
        ### END SOLUTION

    def forward(self, x: t.Tensor) -> t.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        ### BEGIN SOLUTION
        height = x.shape[2]
        pixels = rearrange(x, "b c h w -> b (h w) c")
        q, k, v = (
            rearrange(proj(pixels), "b s (n e) -> b n s e", n=self.num_heads)
            for proj in (self.W_Q, self.W_K, self.W_V)
        )
        # Scaling the queries gives the same scores as scaling the (much larger) score matrix.
        scores = einsum("b n q e, b n k e -> b n q k", q / self.head_size**0.5, k)
        weights = scores.softmax(dim=-1)
        mixed = einsum("b n q k, b n k e -> b n q e", weights, v)
        out = self.W_O(rearrange(mixed, "b n s e -> b s (n e)"))
        return rearrange(out, "b (h w) c -> b c h w", h=height)
        ### END SOLUTION


# %% nbgrader={"grade_id": "test_self_attention", "points": 2}
if MAIN:
    w3d4_test.test_self_attention(SelfAttention)

# %% [markdown]
# ## Transposed convolution
#
# You implemented `Conv2d` earlier in the course; its transposed version works along similar
# lines. To keep today's main path short we use PyTorch's built-in here, and you can write your own
# in the [bonus section](#Bonus:-a-transposed-convolution-from-scratch) at the end. If the operation
# still feels mysterious, the pictures in chapter 4 of
# [A guide to convolution arithmetic for deep learning](https://arxiv.org/abs/1603.07285) (Dumoulin
# and Visin) are the best explanation we know.
#
# With a 4x4 kernel, stride 2 and padding 1, a transposed convolution exactly doubles the height
# and width, undoing the 4x4, stride 2, padding 1 convolution of the down blocks.

# %%
ConvTranspose2d = nn.ConvTranspose2d

# %% [markdown]
# ## Assembling the U-Net
#
# Now implement each block from its diagram in [The DDPM model](#The-DDPM-model). Use your own
# `GroupNorm`, `SiLU`, `SelfAttention` and `SinusoidalPositionEmbeddings`; for convolutions and
# linear layers use `nn.Conv2d`, `nn.Linear` and the `ConvTranspose2d` above.
#
# ### The attention block
#
# Group norm with a single group, self-attention with 4 heads, and the input added back.

# %% nbgrader={"grade_id": "attention_block"}
class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        ### BEGIN SOLUTION
        self.norm = GroupNorm(1, channels)
        self.attention = SelfAttention(channels, num_heads=4)
        ### END SOLUTION

    def forward(self, x: t.Tensor) -> t.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        ### BEGIN SOLUTION
        return x + self.attention(self.norm(x))
        ### END SOLUTION


# %% nbgrader={"grade_id": "test_attention_block", "points": 1}
if MAIN:
    w3d4_test.test_attention_block(AttentionBlock)

# %% [markdown]
# ### The residual block
#
# Follow the diagram: main branch conv, group norm, SiLU; add the projected step embedding; conv,
# group norm, SiLU; then add the shortcut. The step embedding goes through SiLU and a linear layer
# to `(batch, c_out)`, one number per channel, which must be broadcast over the pixels before it is
# added.
#
# The tests of this and the following blocks check what every correct block does: shapes, parameter
# counts, that the step embedding and the skip change the output. They cannot check every number
# without the solution, so their PASS line says what they checked. The autograder also checks the
# numbers: it recognises your layers by their kind and shape and by the order in which your forward
# pass first uses them (never by their names or the order you create them in), sets them to weights
# of its own, and compares the output with the diagram. So follow the diagrams' order exactly, and
# build the layers from `nn.Conv2d`, `nn.Linear`, `nn.GroupNorm` or your own `GroupNorm`, your
# `SelfAttention` or `AttentionBlock`, and `ConvTranspose2d`; activations may be your `SiLU`,
# `nn.SiLU` or `F.silu`. A mistake in `GroupNorm`, `SiLU`, `SelfAttention`, `AttentionBlock` or the
# bonus costs the points of that exercise only, but a mistake inside your residual block also shows
# in every block built on it.

# %% nbgrader={"grade_id": "residual_block"}
class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        """
        input_channels: number of channels in the input to forward
        output_channels: number of channels in the returned output
        step_dim: embedding dimension size for the number of steps
        groups: number of groups in the GroupNorms

        Note that the conv in the left branch is needed if c_in != c_out.
        """
        super().__init__()
        ### BEGIN SOLUTION
        self.conv1 = nn.Conv2d(input_channels, output_channels, kernel_size=3, padding=1)
        self.norm1 = GroupNorm(groups, output_channels)
        self.conv2 = nn.Conv2d(output_channels, output_channels, kernel_size=3, padding=1)
        self.norm2 = GroupNorm(groups, output_channels)
        self.act = SiLU()
        self.step_mlp = nn.Sequential(SiLU(), nn.Linear(step_dim, output_channels))
        self.shortcut = (
            nn.Conv2d(input_channels, output_channels, kernel_size=1)
            if input_channels != output_channels
            else nn.Identity()
        )
        ### END SOLUTION

    def forward(self, x: t.Tensor, time_emb: t.Tensor) -> t.Tensor:
        """
        x: shape (batch, input_channels, height, width)
        time_emb: shape (batch, step_dim)
        out: shape (batch, output_channels, height, width)

        The (SiLU, Linear) branch gives shape (batch, output_channels); give it two trailing
        dimensions of size 1 before adding it to the (batch, output_channels, height, width)
        output of the first (conv, norm, SiLU) round.
        """
        ### BEGIN SOLUTION
        h = self.act(self.norm1(self.conv1(x)))
        h = h + rearrange(self.step_mlp(time_emb), "b c -> b c 1 1")
        h = self.act(self.norm2(self.conv2(h)))
        return h + self.shortcut(x)
        ### END SOLUTION


# %% nbgrader={"grade_id": "test_residual_block", "points": 2}
if MAIN:
    w3d4_test.test_residual_block(ResidualBlock)

# %% [markdown]
# ### The down block
#
# Remember to return the downsampled output first and the skip second. Asserting that the height
# and width are even before you halve them is good practice.

# %% nbgrader={"grade_id": "down_block"}
class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        ### BEGIN SOLUTION
        self.downsample = downsample
        self.res1 = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)
        self.res2 = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.attention = AttentionBlock(channels_out)
        self.down = (
            nn.Conv2d(channels_out, channels_out, kernel_size=4, stride=2, padding=1)
            if downsample
            else nn.Identity()
        )
        ### END SOLUTION

    def forward(self, x: t.Tensor, step_emb: t.Tensor) -> tuple[t.Tensor, t.Tensor]:
        """
        x: shape (batch, channels, height, width)
        step_emb: shape (batch, emb)
        Return: (downsampled output, full size output to skip to matching UpBlock)
        """
        ### BEGIN SOLUTION
        if self.downsample:
            assert x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0, f"cannot halve an odd size {tuple(x.shape[-2:])}"
        skip = self.attention(self.res2(self.res1(x, step_emb), step_emb))
        return self.down(skip), skip
        ### END SOLUTION


# %% nbgrader={"grade_id": "test_down_block", "points": 2}
if MAIN:
    w3d4_test.test_down_block(DownBlock, downsample=True)
    w3d4_test.test_down_block(DownBlock, downsample=False)

# %% [markdown]
# ### The up block
#
# The arguments are those of the matching down block: `dim_in` is that block's input channels and
# `dim_out` its output channels. Concatenate the input and the skip along the channels (input
# first), then follow the diagram.

# %% nbgrader={"grade_id": "up_block"}
class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        """
        IMPORTANT: arguments are with respect to the matching DownBlock.

        dim_in: input channels of the matching DownBlock, and this block's output channels
        dim_out: output channels of the matching DownBlock, so both x and skip have dim_out channels
        """
        super().__init__()
        ### BEGIN SOLUTION
        self.res1 = ResidualBlock(2 * dim_out, dim_in, time_emb_dim, groups)
        self.res2 = ResidualBlock(dim_in, dim_in, time_emb_dim, groups)
        self.attention = AttentionBlock(dim_in)
        self.up = (
            ConvTranspose2d(dim_in, dim_in, kernel_size=4, stride=2, padding=1) if upsample else nn.Identity()
        )
        ### END SOLUTION

    def forward(self, x: t.Tensor, step_emb: t.Tensor, skip: t.Tensor) -> t.Tensor:
        """
        x: shape (batch, dim_out, height, width)
        step_emb: shape (batch, emb)
        skip: shape (batch, dim_out, height, width), from the matching DownBlock
        out: shape (batch, dim_in, 2 * height, 2 * width), or (batch, dim_in, height, width)
            without upsampling
        """
        ### BEGIN SOLUTION
        h = t.cat([x, skip], dim=1)
        h = self.attention(self.res2(self.res1(h, step_emb), step_emb))
        return self.up(h)
        ### END SOLUTION


# %% nbgrader={"grade_id": "test_up_block", "points": 2}
if MAIN:
    w3d4_test.test_up_block(UpBlock, upsample=True)
    w3d4_test.test_up_block(UpBlock, upsample=False)

# %% [markdown]
# ### The mid block
#
# Residual block, attention block, residual block, all at `mid_dim` channels.

# %% nbgrader={"grade_id": "mid_block"}
class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        ### BEGIN SOLUTION
        self.res1 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        self.attention = AttentionBlock(mid_dim)
        self.res2 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        ### END SOLUTION

    def forward(self, x: t.Tensor, step_emb: t.Tensor):
        """
        x: shape (batch, mid_dim, height, width)
        step_emb: shape (batch, emb)
        out: shape (batch, mid_dim, height, width)
        """
        ### BEGIN SOLUTION
        return self.res2(self.attention(self.res1(x, step_emb)), step_emb)
        ### END SOLUTION


# %% nbgrader={"grade_id": "test_mid_block", "points": 1}
if MAIN:
    w3d4_test.test_mid_block(MidBlock)

# %% [markdown]
# ### The whole network
#
# Everything comes together in `Unet`. Its channel counts come from `dim_mults`: with `C` channels
# after the input convolution, down block `i` goes from `dims[i]` to `dims[i + 1]` channels, where
# `dims = [C] + [m * C for m in dim_mults]`. Every down block but the last downsamples. There is an
# up block for every down block except the first, in reverse order, each built with the arguments of
# its down block and always upsampling. The step embedding is the sinusoidal embedding of size
# `max_steps` followed by `Linear(max_steps, 4C)`, GELU and `Linear(4C, 4C)`, so the blocks receive
# `emb = 4C`.
#
# With the defaults `dim_mults=(1, 2, 4, 8)` there is one more down block and one more up block than
# in the overview diagram, and the network has about 133 million parameters: far too many to train
# on a laptop, so the tests use small configurations.
#
# Keep the two attributes that the stub sets: `img_shape`, and `noise_schedule`, which stays `None`
# until training attaches one.

# %% nbgrader={"grade_id": "unet"}
class Unet(DiffusionModel):
    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: int = 128,
        dim_mults: tuple[int, ...] = (1, 2, 4, 8),
        groups: int = 4,
        max_steps: int = 1000,
    ):
        """
        image_shape: the input and output image shape, a tuple of (C, H, W)
        channels: the number of channels after the first convolution.
        dim_mults: the number of output channels for downblock i is dim_mults[i] * channels. Note that the default arg of (1, 2, 4, 8) will contain one more DownBlock and UpBlock than the DDPM image above.
        groups: number of groups in the group normalization of each ResnetBlock (doesn't apply to attention block)
        max_steps: the max number of (de)noising steps. We also use this value as the sinusoidal positional embedding dimension (although in general these do not need to be related).
        """
        super().__init__()
        self.noise_schedule = None
        self.img_shape = image_shape
        ### BEGIN SOLUTION
        image_channels = image_shape[0]
        step_dim = 4 * channels
        self.step_mlp = nn.Sequential(
            SinusoidalPositionEmbeddings(max_steps),
            nn.Linear(max_steps, step_dim),
            nn.GELU(),
            nn.Linear(step_dim, step_dim),
        )
        self.in_conv = nn.Conv2d(image_channels, channels, kernel_size=7, padding=3)
        dims = [channels] + [m * channels for m in dim_mults]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList(
            DownBlock(c_in, c_out, step_dim, groups, downsample=i < len(pairs) - 1)
            for i, (c_in, c_out) in enumerate(pairs)
        )
        self.mid = MidBlock(dims[-1], step_dim, groups)
        self.ups = nn.ModuleList(
            UpBlock(c_in, c_out, step_dim, groups, upsample=True) for c_in, c_out in reversed(pairs[1:])
        )
        self.out_block = ResidualBlock(channels, channels, step_dim, groups)
        self.out_conv = nn.Conv2d(channels, image_channels, kernel_size=1)
        ### END SOLUTION

    def forward(self, x: t.Tensor, num_steps: t.Tensor) -> t.Tensor:
        """
        x: shape (batch, channels, height, width)
        num_steps: shape (batch, )

        out: shape (batch, channels, height, width)
        """
        ### BEGIN SOLUTION
        emb = self.step_mlp(num_steps)
        h = self.in_conv(x)
        skips = []
        for down in self.downs:
            h, skip = down(h, emb)
            skips.append(skip)
        h = self.mid(h, emb)
        for up in self.ups:
            h = up(h, emb, skips.pop())
        return self.out_conv(self.out_block(h, emb))
        ### END SOLUTION


# %% nbgrader={"grade_id": "test_unet", "points": 2}
if MAIN:
    w3d4_test.test_unet(Unet)

# %% [markdown]
# Congratulations: that is the whole DDPM network. Here is a small one, the size you could train on
# a laptop, with its number of parameters.

# %%
if MAIN:
    small = Unet((1, 16, 16), channels=16, dim_mults=(1, 2), groups=4, max_steps=200)
    images = t.randn(4, 1, 16, 16)
    predicted_noise = small(images, t.randint(1, 201, (4,)))
    n_params = sum(p.numel() for p in small.parameters())
    print(f"{tuple(images.shape)} -> {tuple(predicted_noise.shape)}, {n_params:,} parameters")

# %% [markdown]
# ## Does it work?
#
# We promised at the start that the network would train even where it strays from the paper.
# Here is the evidence, small enough for a laptop: the 1,797 handwritten digits that come with
# scikit-learn (8x8 pixels, stored inside the package, so nothing is downloaded), scaled to
# `[-1, 1]`. The Unet is your class with a narrow configuration: 16 channels, two levels, and a
# noise schedule of 200 steps instead of 1000. Training and sampling are part 1's loop and DDPM
# sampler, unchanged.
#
# By default this section does not train. It loads weights that were trained with the same
# settings (by `python -m training` in the course repository) into *your* `Unet`. The weights are
# matched to your layers by shape, in the order your forward pass first uses them (as the autograder
# does), so a Unet that follows the diagrams can take them whatever you named its attributes and
# in whatever order you created them, with separate or fused attention projections; the loader then
# checks that your network computes what the trained one did. (The trained layers all have biases.
# If your attention's projections have none, it still takes the weights, all but the biases it has
# no place for; the loader says which, and how closely your network then follows the trained one.)
#
# To train your own from scratch instead, insert a cell right after the next one containing
# `TRAIN_NOW = True`, and run the cells from there on. (The lesson's own cells are read-only; cells
# you add are yours.) Training shows a progress bar and takes a few minutes: about seven on a
# 2-core CPU, seconds on a GPU.
#
# How do we know the samples are good and not just digit-shaped blobs? For every sample we find
# the closest training image and measure the distance between them (L2 over the 64 pixels). The
# mean of that distance means little on its own, so we compute it for three other sets of images
# too: real digits that were kept out of training (what a perfect model would score), samples
# from an untrained Unet of your class, and Gaussian noise clipped to `[-1, 1]`. Good samples land
# near the held-out digits and far from noise. Much *lower* than the held-out digits would mean the
# model memorised and copies training images.

# %% tags=["skip-when-grading"]
TRAIN_NOW = False  # load the shipped weights; a cell of yours below may set it to True

# %% tags=["skip-when-grading"]
if MAIN:
    digits_model = None  # stays None, with a message saying why, if the demo cannot run
    try:
        import w3d4_digits as digits

        trainset, heldout = digits.load_digits_split()  # (1597, 1, 8, 8) and (200, 1, 8, 8)
    except ModuleNotFoundError as error:
        where = " Keep the lesson's files next to this notebook." if error.name == "w3d4_digits" else ""
        print(f"This section cannot run here: {error}.{where}")
    else:
        digits_model, digits_losses = digits.prepare_unet(Unet, trainset, train_now=TRAIN_NOW)

# %% [markdown]
# Forty samples, each drawn from pure noise in 200 denoising steps, beside forty real digits the
# model never saw; then the quality measure on these forty.

# %% tags=["skip-when-grading"]
if MAIN and digits_model is not None:
    digits_samples = digits.sample_digits(digits_model, 40)
    digits.plot_samples(digits_samples, heldout)
    plt.show()
    untrained = digits.untrained_samples(Unet, len(digits_samples))
    print(digits.measure_quality(digits_samples, untrained, trainset, heldout[: len(digits_samples)]))

# %% [markdown]
# What the network learnt in one picture. The top row takes one held-out digit and jumps it
# forward by more and more noise steps; the bottom row is the clean image that the model's
# predicted noise implies (part 1's `reconstruct`), in a single step. With a little noise the
# estimate is nearly exact; with a lot of noise it is a blurred guess at a plausible digit, which
# is why sampling removes the noise a little at a time.

# %% tags=["skip-when-grading"]
if MAIN and digits_model is not None:
    digits.plot_denoising(*digits.denoise_demo(digits_model, heldout[0]))
    plt.show()

# %% [markdown]
# The training loss, recorded at every optimiser step (and stored in the checkpoint, unless you
# trained here). It falls fast, then slowly, and stays well above zero: the noise is drawn at
# random, and from a noised image a model can only predict what the noise probably was.

# %% tags=["skip-when-grading"]
if MAIN and digits_model is not None:
    digits.plot_losses(digits_losses)
    plt.show()

# %% [markdown]
# ## Bonus: a transposed convolution from scratch
#
# Implement `ConvTranspose2dFromScratch`, a transposed convolution of your own, for square kernels, one stride and one padding for both
# spatial dimensions, and no groups, dilation or output padding. So that the test can compare with
# `torch.nn.ConvTranspose2d`, keep its parameter layout: `self.weight` of shape
# `(in_channels, out_channels, kernel_size, kernel_size)` and `self.bias` of shape
# `(out_channels,)`.
#
# One way to see the operation: each input pixel of each input channel stamps the kernel, scaled
# by the pixel's value, onto the output, with stamps `stride` pixels apart; overlapping stamps add
# up, and finally `padding` rows and columns are cropped from every border. So the output height is
# `(height - 1) * stride - 2 * padding + kernel_size`.
#
# <details>
# <summary>Hint: how can I reuse an ordinary convolution?</summary>
#
# Spread the input out by inserting `stride - 1` zeros between neighbouring pixels, pad every
# border with `kernel_size - 1 - padding` zeros, and run an ordinary convolution (stride 1) with
# the kernel flipped left-right and up-down and its two channel axes swapped. If your outputs look
# right but the numbers are wrong, check the flip.
# </details>
#
# Your class lives under its own name, so the U-Net keeps using PyTorch's layer and nothing you do
# here changes the main exercises. When the test passes, you can opt in: the last cell of this
# section points the name `ConvTranspose2d` at your class, and the up blocks built after that use it
# (they look the name up when they are built), which the up block test then checks.

# %% nbgrader={"grade_id": "conv_transpose2d"}
class ConvTranspose2dFromScratch(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        """
        A from-scratch replacement for torch.nn.ConvTranspose2d with square kernels.

        weight: shape (in_channels, out_channels, kernel_size, kernel_size)
        bias: shape (out_channels,)
        """
        super().__init__()
        ### BEGIN SOLUTION
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        if padding > kernel_size - 1:
            raise ValueError(f"padding ({padding}) must be smaller than kernel_size ({kernel_size})")
        # Same initialisation as torch's: uniform in +-1/sqrt(fan_in), with fan_in taken from
        # weight.shape[1] * k * k because of the transposed layout.
        bound = 1 / (out_channels * kernel_size * kernel_size) ** 0.5
        self.weight = nn.Parameter(t.empty(in_channels, out_channels, kernel_size, kernel_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(t.empty(out_channels).uniform_(-bound, bound))
        ### END SOLUTION

    def forward(self, x: t.Tensor) -> t.Tensor:
        """
        x: shape (batch, in_channels, height, width)
        out: shape (batch, out_channels, (height - 1) * stride - 2 * padding + kernel_size, same for width)
        """
        ### BEGIN SOLUTION
        batch, channels, height, width = x.shape
        spread = x.new_zeros(batch, channels, (height - 1) * self.stride + 1, (width - 1) * self.stride + 1)
        spread[:, :, :: self.stride, :: self.stride] = x
        border = self.kernel_size - 1 - self.padding
        padded = nn.functional.pad(spread, (border, border, border, border))
        kernel = rearrange(self.weight.flip(-1, -2), "i o kh kw -> o i kh kw")
        return nn.functional.conv2d(padded, kernel, self.bias)
        ### END SOLUTION


# %% nbgrader={"grade_id": "test_conv_transpose2d"}
if MAIN:
    w3d4_test.test_conv_transpose2d(ConvTranspose2dFromScratch)

# %% [markdown]
# To build your U-Net with your own transposed convolution, set `USE_MY_CONV_TRANSPOSE = True` and
# run this cell. It is off by default, so leaving the bonus out changes nothing.

# %%
USE_MY_CONV_TRANSPOSE = False
if MAIN and USE_MY_CONV_TRANSPOSE:
    ConvTranspose2d = ConvTranspose2dFromScratch
    w3d4_test.test_up_block(UpBlock, upsample=True)
