"""Separate bias-free 1x1 convolutions `to_q`, `to_k`, `to_v`, `to_o` (`nn.Conv2d(C, C, 1,
bias=False)`), attention by `F.scaled_dot_product_attention` on the flattened pixels; GroupNorm
statistics with einops `reduce`; embeddings computed in forward, interleaved; the Unet keeps its
skips in a list and passes them by index."""

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
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
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.empty(num_channels, device=device, dtype=dtype))
            self.bias = nn.Parameter(torch.empty(num_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialize the weight and bias, if applicable."""
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, height, width) -> same shape"""
        grouped = rearrange(x, "b (g c) h w -> b g c h w", g=self.num_groups)
        mean = reduce(grouped, "b g c h w -> b g () () ()", "mean")
        var = reduce((grouped - mean) ** 2, "b g c h w -> b g () () ()", "mean")
        normed = rearrange((grouped - mean) / torch.sqrt(var + self.eps), "b g c h w -> b (g c) h w")
        if self.affine:
            normed = normed * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return normed


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        self.embedding_size = embedding_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch,) -> (batch, embedding_size) = [sin w0 x, cos w0 x, sin w1 x, ...]"""
        two_k = torch.arange(0, self.embedding_size, 2, device=x.device, dtype=torch.float32)
        omega = torch.exp(-math.log(10000.0) * two_k / self.embedding_size)
        angles = x.float()[:, None] * omega
        return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(start_dim=1)


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
        assert channels % num_heads == 0
        self.num_heads = num_heads
        self.to_q = nn.Conv2d(channels, channels, 1, bias=False)
        self.to_k = nn.Conv2d(channels, channels, 1, bias=False)
        self.to_v = nn.Conv2d(channels, channels, 1, bias=False)
        self.to_o = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        h = x.shape[2]
        q, k, v = (
            rearrange(proj(x), "b (n e) h w -> b n (h w) e", n=self.num_heads) for proj in (self.to_q, self.to_k, self.to_v)
        )
        z = F.scaled_dot_product_attention(q, k, v)
        return self.to_o(rearrange(z, "b n (h w) e -> b (n e) h w", h=h))


ConvTranspose2d = nn.ConvTranspose2d


class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = GroupNorm(1, channels)
        self.attention = SelfAttention(channels, num_heads=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.norm(x))


class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        super().__init__()
        self.in_layers = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 3, padding=1), GroupNorm(groups, output_channels), SiLU()
        )
        self.emb_layers = nn.Sequential(SiLU(), nn.Linear(step_dim, output_channels))
        self.out_layers = nn.Sequential(
            nn.Conv2d(output_channels, output_channels, 3, padding=1), GroupNorm(groups, output_channels), SiLU()
        )
        if input_channels == output_channels:
            self.skip_connection = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(input_channels, output_channels, 1)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        emb_out = self.emb_layers(time_emb)
        while emb_out.dim() < h.dim():
            emb_out = emb_out[..., None]
        h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.res1 = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)
        self.res2 = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.attention = AttentionBlock(channels_out)
        self.op = nn.Conv2d(channels_out, channels_out, 4, stride=2, padding=1) if downsample else nn.Identity()

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.downsample:
            assert x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0, "DownBlock needs an even height and width"
        skip = self.attention(self.res2(self.res1(x, step_emb), step_emb))
        return self.op(skip), skip


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        super().__init__()
        self.res1 = ResidualBlock(2 * dim_out, dim_in, time_emb_dim, groups)
        self.res2 = ResidualBlock(dim_in, dim_in, time_emb_dim, groups)
        self.attention = AttentionBlock(dim_in)
        self.op = nn.ConvTranspose2d(dim_in, dim_in, 4, stride=2, padding=1) if upsample else nn.Identity()

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, skip], dim=1)
        return self.op(self.attention(self.res2(self.res1(h, step_emb), step_emb)))


class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.res1 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        self.attention = AttentionBlock(mid_dim)
        self.res2 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor):
        return self.res2(self.attention(self.res1(x, step_emb)), step_emb)


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
        self.time_embed = nn.Sequential(
            SinusoidalPositionEmbeddings(max_steps), nn.Linear(max_steps, emb), nn.GELU(), nn.Linear(emb, emb)
        )
        self.input_conv = nn.Conv2d(image_shape[0], channels, 7, padding=3)
        dims = [channels] + [m * channels for m in dim_mults]
        levels = len(dim_mults)
        self.input_blocks = nn.ModuleList(
            [DownBlock(dims[i], dims[i + 1], emb, groups, downsample=i < levels - 1) for i in range(levels)]
        )
        self.middle_block = MidBlock(dims[-1], emb, groups)
        # output_blocks[j] pairs with input_blocks[levels - 1 - j]
        self.output_blocks = nn.ModuleList(
            [UpBlock(dims[i], dims[i + 1], emb, groups, upsample=True) for i in range(levels - 1, 0, -1)]
        )
        self.out_res = ResidualBlock(channels, channels, emb, groups)
        self.out_conv = nn.Conv2d(channels, image_shape[0], 1)

    def forward(self, x: torch.Tensor, num_steps: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(num_steps)
        h = self.input_conv(x)
        hs = []
        for block in self.input_blocks:
            h, skip = block(h, emb)
            hs.append(skip)
        h = self.middle_block(h, emb)
        levels = len(self.input_blocks)
        for j, block in enumerate(self.output_blocks):
            h = block(h, emb, hs[levels - 1 - j])
        return self.out_conv(self.out_res(h, emb))
