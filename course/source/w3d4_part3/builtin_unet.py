# Generated from training/builtin_unet.py by `python -m grader build`: edit that file, not this one.
"""The lesson's Unet assembled from torch built-ins, for speed comparisons and as a second implementation.

Same architecture, same parameters in the same registration order as the solution's `Unet` (so
`w3d4_digits.match_parameters` moves weights between the two, and `load_checkpoint` loads the
shipped ones), but every from-scratch piece is replaced by PyTorch's own: `nn.GroupNorm`, `F.silu`,
`F.scaled_dot_product_attention` and `nn.ConvTranspose2d`. `benchmarks/unet_step_vs_builtins.py`
times the two side by side.
"""

from __future__ import annotations

import torch as t
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from w3d4_part1_diffusion_training_solution import DiffusionModel


class SinusoidalPositionEmbeddings(nn.Module):
    """Sinusoidal embedding of the number of steps, sines and cosines interleaved as in the lesson."""

    frequencies: t.Tensor

    def __init__(self, embedding_size: int):
        super().__init__()
        k = t.arange(embedding_size // 2, dtype=t.float32)
        self.register_buffer("frequencies", 1.0 / 10000 ** (2 * k / embedding_size))

    def forward(self, steps: t.Tensor) -> t.Tensor:
        """steps: (batch,) -> (batch, embedding_size)"""
        angles = t.outer(steps.float(), self.frequencies)
        return t.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)


class SelfAttention(nn.Module):
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.W_Q, self.W_K, self.W_V, self.W_O = (nn.Linear(channels, channels) for _ in range(4))

    def forward(self, x: t.Tensor) -> t.Tensor:
        """x: (batch, channels, height, width) -> same shape"""
        pixels = rearrange(x, "b c h w -> b (h w) c")
        q, k, v = (rearrange(W(pixels), "b s (n e) -> b n s e", n=self.num_heads) for W in (self.W_Q, self.W_K, self.W_V))
        mixed = rearrange(F.scaled_dot_product_attention(q, k, v), "b n s e -> b s (n e)")
        return rearrange(self.W_O(mixed), "b (h w) c -> b c h w", h=x.shape[2])


class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.attention = SelfAttention(channels)

    def forward(self, x: t.Tensor) -> t.Tensor:
        return x + self.attention(self.norm(x))


class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, output_channels, 3, padding=1)
        self.norm1 = nn.GroupNorm(groups, output_channels)
        self.conv2 = nn.Conv2d(output_channels, output_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, output_channels)
        self.step_mlp = nn.Linear(step_dim, output_channels)
        self.shortcut = nn.Conv2d(input_channels, output_channels, 1) if input_channels != output_channels else nn.Identity()

    def forward(self, x: t.Tensor, step_emb: t.Tensor) -> t.Tensor:
        h = F.silu(self.norm1(self.conv1(x))) + self.step_mlp(F.silu(step_emb))[:, :, None, None]
        return F.silu(self.norm2(self.conv2(h))) + self.shortcut(x)


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.res1 = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)
        self.res2 = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.attention = AttentionBlock(channels_out)
        self.down = nn.Conv2d(channels_out, channels_out, 4, stride=2, padding=1) if downsample else nn.Identity()

    def forward(self, x: t.Tensor, step_emb: t.Tensor) -> tuple[t.Tensor, t.Tensor]:
        skip = self.attention(self.res2(self.res1(x, step_emb), step_emb))
        return self.down(skip), skip


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        super().__init__()
        self.res1 = ResidualBlock(2 * dim_out, dim_in, time_emb_dim, groups)
        self.res2 = ResidualBlock(dim_in, dim_in, time_emb_dim, groups)
        self.attention = AttentionBlock(dim_in)
        self.up = nn.ConvTranspose2d(dim_in, dim_in, 4, stride=2, padding=1) if upsample else nn.Identity()

    def forward(self, x: t.Tensor, step_emb: t.Tensor, skip: t.Tensor) -> t.Tensor:
        h = self.res2(self.res1(t.cat([x, skip], dim=1), step_emb), step_emb)
        return self.up(self.attention(h))


class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.res1 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        self.attention = AttentionBlock(mid_dim)
        self.res2 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)

    def forward(self, x: t.Tensor, step_emb: t.Tensor) -> t.Tensor:
        return self.res2(self.attention(self.res1(x, step_emb)), step_emb)


class BuiltinUnet(DiffusionModel):
    """`Unet` with the lesson's constructor, built from torch's own layers."""

    def __init__(self, image_shape: tuple[int, int, int], channels: int = 128, dim_mults: tuple[int, ...] = (1, 2, 4, 8),
                 groups: int = 4, max_steps: int = 1000):
        super().__init__()
        self.noise_schedule = None
        self.img_shape = image_shape
        step_dim = 4 * channels
        self.step_mlp = nn.Sequential(
            SinusoidalPositionEmbeddings(max_steps), nn.Linear(max_steps, step_dim), nn.GELU(), nn.Linear(step_dim, step_dim)
        )
        self.in_conv = nn.Conv2d(image_shape[0], channels, 7, padding=3)
        dims = [channels] + [m * channels for m in dim_mults]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList(
            DownBlock(c_in, c_out, step_dim, groups, downsample=i < len(pairs) - 1) for i, (c_in, c_out) in enumerate(pairs)
        )
        self.mid = MidBlock(dims[-1], step_dim, groups)
        self.ups = nn.ModuleList(UpBlock(c_in, c_out, step_dim, groups, upsample=True) for c_in, c_out in reversed(pairs[1:]))
        self.out_block = ResidualBlock(channels, channels, step_dim, groups)
        self.out_conv = nn.Conv2d(channels, image_shape[0], 1)

    def forward(self, x: t.Tensor, num_steps: t.Tensor) -> t.Tensor:
        """x: (batch, channels, height, width); num_steps: (batch,) -> predicted noise like x"""
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
