"""Keeps the lesson text's `W_Q`, `W_K`, `W_V`, `W_O` Linear projections with bias, but scales
queries and keys each by head_size ** -0.25 (fancy_einsum scores); GroupNorm with
`Tensor.var(correction=0)`; the skip is concatenated before the input; the Unet zips its up blocks
with the reversed skips."""

from typing import Optional, Union

import torch as t
from einops import rearrange
from fancy_einsum import einsum
from torch import nn

from w3d4_part1_diffusion_training_solution import DiffusionModel


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
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(t.ones(num_channels, device=device, dtype=dtype))
            self.bias = nn.Parameter(t.zeros(num_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        """Initialize the weight and bias, if applicable."""
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: t.Tensor) -> t.Tensor:
        """x: (batch, channels, height, width) -> same shape"""
        x5 = rearrange(x, "b (g cg) h w -> b g cg h w", g=self.num_groups)
        mean = x5.mean(dim=(-3, -2, -1), keepdim=True)
        var = x5.var(dim=(-3, -2, -1), keepdim=True, correction=0)
        normalised = rearrange((x5 - mean) * t.rsqrt(var + self.eps), "b g cg h w -> b (g cg) h w")
        if self.affine:
            return self.weight[:, None, None] * normalised + self.bias[:, None, None]
        return normalised


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        self.embedding_size = embedding_size
        frequencies = t.tensor([1 / 10000 ** (2 * k / embedding_size) for k in range(embedding_size // 2)])
        self.register_buffer("frequencies", frequencies)

    def forward(self, x: t.Tensor) -> t.Tensor:
        """x: (batch,) -> (batch, embedding_size)"""
        angles = einsum("batch, freq -> batch freq", x.float(), self.frequencies)
        return t.cat((angles.sin(), angles.cos()), dim=-1)


def swish(x: t.Tensor) -> t.Tensor:
    return x * t.sigmoid(x)


class SiLU(nn.Module):
    def forward(self, x: t.Tensor) -> t.Tensor:
        return swish(x)


class SelfAttention(nn.Module):
    def __init__(self, channels: int, num_heads: int = 4):
        """Self-Attention with two spatial dimensions.

        channels: the number of channels. Should be divisible by the number of heads.
        """
        super().__init__()
        assert channels % num_heads == 0
        self.num_heads = num_heads
        self.head_size = channels // num_heads
        self.W_Q = nn.Linear(channels, channels)
        self.W_K = nn.Linear(channels, channels)
        self.W_V = nn.Linear(channels, channels)
        self.W_O = nn.Linear(channels, channels)

    def forward(self, x: t.Tensor) -> t.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        h = x.shape[2]
        seq = rearrange(x, "b c h w -> b (h w) c")
        # scaling both sides by head_size ** -0.25 scales their dot products by 1/sqrt(head_size)
        scale = self.head_size**-0.25
        q = rearrange(self.W_Q(seq) * scale, "b s (nh hs) -> b nh s hs", nh=self.num_heads)
        k = rearrange(self.W_K(seq) * scale, "b s (nh hs) -> b nh s hs", nh=self.num_heads)
        v = rearrange(self.W_V(seq), "b s (nh hs) -> b nh s hs", nh=self.num_heads)
        scores = einsum("b nh sq hs, b nh sk hs -> b nh sq sk", q, k)
        probs = t.softmax(scores, dim=-1)
        z = einsum("b nh sq sk, b nh sk hs -> b sq nh hs", probs, v)
        out = self.W_O(rearrange(z, "b sq nh hs -> b sq (nh hs)"))
        return rearrange(out, "b (h w) c -> b c h w", h=h)


ConvTranspose2d = nn.ConvTranspose2d


class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.gn = GroupNorm(1, channels)
        self.attn = SelfAttention(channels)

    def forward(self, x: t.Tensor) -> t.Tensor:
        return x + self.attn(self.gn(x))


class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, output_channels, 3, padding=1)
        self.gn1 = GroupNorm(groups, output_channels)
        self.act1 = SiLU()
        self.time_act = SiLU()
        self.time_linear = nn.Linear(step_dim, output_channels)
        self.conv2 = nn.Conv2d(output_channels, output_channels, 3, padding=1)
        self.gn2 = GroupNorm(groups, output_channels)
        self.act2 = SiLU()
        self.needs_projection = input_channels != output_channels
        if self.needs_projection:
            self.projection = nn.Conv2d(input_channels, output_channels, 1)

    def forward(self, x: t.Tensor, time_emb: t.Tensor) -> t.Tensor:
        out = self.act1(self.gn1(self.conv1(x)))
        step = self.time_linear(self.time_act(time_emb))
        out = out + rearrange(step, "b c -> b c 1 1")
        out = self.act2(self.gn2(self.conv2(out)))
        if self.needs_projection:
            x = self.projection(x)
        return out + x


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.res_a = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)
        self.res_b = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.attention = AttentionBlock(channels_out)
        if downsample:
            self.conv = nn.Conv2d(channels_out, channels_out, 4, 2, 1)

    def forward(self, x: t.Tensor, step_emb: t.Tensor) -> tuple[t.Tensor, t.Tensor]:
        if self.downsample:
            assert x.shape[2] % 2 == 0, "odd height"
            assert x.shape[3] % 2 == 0, "odd width"
        skip = self.attention(self.res_b(self.res_a(x, step_emb), step_emb))
        return (self.conv(skip) if self.downsample else skip), skip


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        super().__init__()
        self.upsample = upsample
        self.res_a = ResidualBlock(2 * dim_out, dim_in, time_emb_dim, groups)
        self.res_b = ResidualBlock(dim_in, dim_in, time_emb_dim, groups)
        self.attention = AttentionBlock(dim_in)
        if upsample:
            self.conv = ConvTranspose2d(dim_in, dim_in, 4, 2, 1)

    def forward(self, x: t.Tensor, step_emb: t.Tensor, skip: t.Tensor) -> t.Tensor:
        h = t.cat([skip, x], dim=1)
        h = self.attention(self.res_b(self.res_a(h, step_emb), step_emb))
        return self.conv(h) if self.upsample else h


class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.res_a = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        self.attention = AttentionBlock(mid_dim)
        self.res_b = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)

    def forward(self, x: t.Tensor, step_emb: t.Tensor):
        return self.res_b(self.attention(self.res_a(x, step_emb)), step_emb)


class Unet(DiffusionModel):
    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: int = 128,
        dim_mults: tuple[int, ...] = (1, 2, 4, 8),
        groups: int = 4,
        max_steps: int = 1000,
    ):
        super().__init__()
        self.noise_schedule = None
        self.img_shape = image_shape
        emb = 4 * channels
        self.steps = nn.Sequential(
            SinusoidalPositionEmbeddings(max_steps), nn.Linear(max_steps, emb), nn.GELU(), nn.Linear(emb, emb)
        )
        self.head = nn.Conv2d(image_shape[0], channels, 7, padding=3)
        sizes = [channels] + [channels * m for m in dim_mults]
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in range(len(dim_mults)):
            last = i == len(dim_mults) - 1
            self.encoder.append(DownBlock(sizes[i], sizes[i + 1], emb, groups, downsample=not last))
        self.middle = MidBlock(sizes[-1], emb, groups)
        for i in reversed(range(1, len(dim_mults))):
            self.decoder.append(UpBlock(sizes[i], sizes[i + 1], emb, groups, upsample=True))
        self.tail_res = ResidualBlock(channels, channels, emb, groups)
        self.tail_conv = nn.Conv2d(channels, image_shape[0], 1)

    def forward(self, x: t.Tensor, num_steps: t.Tensor) -> t.Tensor:
        emb = self.steps(num_steps)
        h = self.head(x)
        skips = []
        for down in self.encoder:
            h, skip = down(h, emb)
            skips.append(skip)
        h = self.middle(h, emb)
        # the first up block takes the last skip; the first down block's skip is never used
        for up, skip in zip(self.decoder, reversed(skips)):
            h = up(h, emb, skip)
        return self.tail_conv(self.tail_res(h, emb))
