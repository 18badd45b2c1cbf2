"""Attention with one fused 1x1 `nn.Conv2d(C, 3C, 1)` for queries, keys and values and a 1x1
`nn.Conv2d(C, C, 1)` output, applied to (b, c, h, w) directly, scores with `torch.einsum`; the blocks
use torch's `nn.GroupNorm` and `nn.SiLU`; the Unet builds its up blocks before its down blocks."""

import math
from typing import Optional, Union

import torch
from einops import rearrange
from torch import nn

from w3d4_part1_diffusion_training_solution import DiffusionModel


class GroupNorm(nn.Module):
    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-05,
        affine: bool = True,
        device: Optional[Union[torch.device, str]] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        self.num_groups = num_groups
        self.eps = eps
        self.affine = affine
        if affine:
            factory = {"device": device, "dtype": dtype}
            self.weight = nn.Parameter(torch.empty(num_channels, **factory))
            self.bias = nn.Parameter(torch.empty(num_channels, **factory))
            self.reset_parameters()
        else:
            self.weight = None
            self.bias = None

    def reset_parameters(self) -> None:
        """Initialize the weight and bias, if applicable."""
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, height, width) -> same shape.

        Each (example, group) is flattened into one row of channels/groups * height * width values."""
        batch = x.shape[0]
        rows = x.reshape(batch, self.num_groups, -1)
        var, mean = torch.var_mean(rows, dim=-1, keepdim=True, correction=0)
        normed = ((rows - mean) / torch.sqrt(var + self.eps)).reshape(x.shape)
        if not self.affine:
            return normed
        return normed * self.weight[None, :, None, None] + self.bias[None, :, None, None]


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        self.embedding_size = embedding_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch,) steps -> (batch, embedding_size): the d/2 cosines, then the d/2 sines.

        The frequencies are w_k = exp(-ln(10000) * 2k / d), the same as 1 / 10000^(2k/d)."""
        half = self.embedding_size // 2
        k = torch.arange(half, device=x.device, dtype=torch.float32)
        frequencies = torch.exp(-math.log(10000) * 2 * k / self.embedding_size)
        angles = x.float()[:, None] * frequencies[None, :]
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class SiLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swish(x)


class SelfAttention(nn.Module):
    def __init__(self, channels: int, num_heads: int = 4):
        """Self-Attention with two spatial dimensions.

        channels: the number of channels. Should be divisible by the number of heads.
        """
        super().__init__()
        if channels % num_heads:
            raise ValueError("channels must be divisible by num_heads")
        self.num_heads = num_heads
        self.head_size = channels // num_heads
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1)
        self.out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        height, width = x.shape[-2:]
        qkv = self.qkv(x)  # (batch, 3 * channels, height, width): all queries, then keys, then values
        q, k, v = rearrange(qkv, "b (three n e) h w -> three b n e (h w)", three=3, n=self.num_heads)
        scores = torch.einsum("bneq,bnek->bnqk", q, k) / math.sqrt(self.head_size)
        attn = torch.softmax(scores, dim=-1)  # over the keys
        mixed = torch.einsum("bnqk,bnek->bneq", attn, v)
        mixed = rearrange(mixed, "b n e (h w) -> b (n e) h w", h=height, w=width)
        return self.out(mixed)


ConvTranspose2d = nn.ConvTranspose2d


class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.attention = SelfAttention(channels, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.norm(x))


class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        """
        input_channels: number of channels in the input to foward
        output_channels: number of channels in the returned output
        step_dim: embedding dimension size for the number of steps
        groups: number of groups in the GroupNorms
        """
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, output_channels, 3, padding=1)
        self.norm1 = nn.GroupNorm(groups, output_channels)
        self.conv2 = nn.Conv2d(output_channels, output_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, output_channels)
        self.act = nn.SiLU()
        self.time_proj = nn.Linear(step_dim, output_channels)
        self.skip = nn.Conv2d(input_channels, output_channels, 1) if input_channels != output_channels else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        """x: (batch, c_in, h, w), time_emb: (batch, step_dim) -> (batch, c_out, h, w)"""
        h = self.act(self.norm1(self.conv1(x)))
        h = h + self.time_proj(self.act(time_emb))[:, :, None, None]
        h = self.act(self.norm2(self.conv2(h)))
        return h + self.skip(x)


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.res1 = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)
        self.res2 = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.attn = AttentionBlock(channels_out)
        if downsample:
            self.down = nn.Conv2d(channels_out, channels_out, kernel_size=4, stride=2, padding=1)

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (batch, c_in, h, w) -> ((batch, c_out, h/2, w/2), skip (batch, c_out, h, w))"""
        if self.downsample and (x.shape[2] % 2 != 0 or x.shape[3] % 2 != 0):
            raise ValueError(f"DownBlock can only halve even sizes, got {x.shape[2]}x{x.shape[3]}")
        skip = self.attn(self.res2(self.res1(x, step_emb), step_emb))
        if self.downsample:
            return self.down(skip), skip
        return skip, skip


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        """
        IMPORTANT: arguments are with respect to the matching DownBlock.
        """
        super().__init__()
        self.upsample = upsample
        self.res1 = ResidualBlock(2 * dim_out, dim_in, time_emb_dim, groups)
        self.res2 = ResidualBlock(dim_in, dim_in, time_emb_dim, groups)
        self.attn = AttentionBlock(dim_in)
        if upsample:
            self.up = nn.ConvTranspose2d(dim_in, dim_in, kernel_size=4, stride=2, padding=1)

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x, skip: (batch, dim_out, h, w) -> (batch, dim_in, 2h, 2w)"""
        h = torch.cat([skip, x], dim=1)
        h = self.attn(self.res2(self.res1(h, step_emb), step_emb))
        return self.up(h) if self.upsample else h


class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.res1 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        self.attn = AttentionBlock(mid_dim)
        self.res2 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor):
        x = self.res1(x, step_emb)
        x = self.attn(x)
        return self.res2(x, step_emb)


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
        emb_dim = 4 * channels
        dims = [channels] + [mult * channels for mult in dim_mults]
        pairs = list(zip(dims[:-1], dims[1:]))

        # The up path is created first; what matters is the order in which forward uses the blocks.
        self.ups = nn.ModuleList([UpBlock(c_in, c_out, emb_dim, groups, True) for c_in, c_out in reversed(pairs[1:])])
        self.mid = MidBlock(dims[-1], emb_dim, groups)
        self.downs = nn.ModuleList(
            [DownBlock(c_in, c_out, emb_dim, groups, i < len(pairs) - 1) for i, (c_in, c_out) in enumerate(pairs)]
        )
        self.first_conv = nn.Conv2d(image_shape[0], channels, kernel_size=7, padding=3)
        self.last_res = ResidualBlock(channels, channels, emb_dim, groups)
        self.last_conv = nn.Conv2d(channels, image_shape[0], kernel_size=1)
        self.step_embedding = nn.Sequential(
            SinusoidalPositionEmbeddings(max_steps), nn.Linear(max_steps, emb_dim), nn.GELU(), nn.Linear(emb_dim, emb_dim)
        )

    def forward(self, x: torch.Tensor, num_steps: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, height, width), num_steps: (batch,) -> same shape as x"""
        emb = self.step_embedding(num_steps)
        h = self.first_conv(x)
        skips = []
        for down in self.downs:
            h, skip = down(h, emb)
            skips.append(skip)
        h = self.mid(h, emb)
        for up in self.ups:
            h = up(h, emb, skips.pop())
        return self.last_conv(self.last_res(h, emb))
