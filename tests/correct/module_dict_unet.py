"""Layers created in another order than they are used everywhere (the attention's W_O, W_V, W_K,
W_Q; each block's parts backwards; the Unet's output layers, then up, mid, down blocks, then the
step MLP), the Unet's parts in an `nn.ModuleDict`; GroupNorm by `F.batch_norm` on a (1, batch *
groups, rest) view; the embedding as sin(w x + phase) with phases 0 and pi/2."""

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F
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
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if affine:
            self.bias = nn.Parameter(torch.zeros(num_channels, device=device, dtype=dtype))
            self.weight = nn.Parameter(torch.ones(num_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
            self.register_parameter("weight", None)

    def reset_parameters(self) -> None:
        """Initialize the weight and bias, if applicable."""
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Batch norm in training mode over a (1, batch * groups, rest) view takes one mean and one
        biased variance per (example, group): group norm's statistics.

        x: (batch, channels, height, width) -> same shape"""
        b = x.shape[0]
        view = x.reshape(1, b * self.num_groups, -1)
        normed = F.batch_norm(view, None, None, training=True, eps=self.eps).reshape(x.shape)
        if self.affine:
            normed = normed * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return normed


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        k = torch.arange(embedding_size) // 2  # 0, 0, 1, 1, 2, 2, ...
        self.register_buffer("frequency", torch.exp(-math.log(10000.0) * (2 * k).float() / embedding_size))
        # cos(a) = sin(a + pi/2): even entries are sines, odd entries cosines
        self.register_buffer("phase", (torch.arange(embedding_size) % 2).float() * (math.pi / 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch,) -> (batch, embedding_size)"""
        return torch.sin(x.float()[:, None] * self.frequency + self.phase)


def swish(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x).mul(x)


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
        self.head_size = channels // num_heads
        self.W_O = nn.Linear(channels, channels)
        self.W_V = nn.Linear(channels, channels)
        self.W_K = nn.Linear(channels, channels)
        self.W_Q = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        _, _, height, width = x.shape
        tokens = rearrange(x, "b c h w -> b (h w) c")
        q = rearrange(self.W_Q(tokens), "b s (n e) -> b s n e", n=self.num_heads)
        k = rearrange(self.W_K(tokens), "b s (n e) -> b s n e", n=self.num_heads)
        v = rearrange(self.W_V(tokens), "b s (n e) -> b s n e", n=self.num_heads)
        scores = torch.einsum("bqne,bkne->bnqk", q, k) / math.sqrt(self.head_size)
        probs = scores.softmax(dim=3)
        z = torch.einsum("bnqk,bkne->bqne", probs, v)
        out = self.W_O(rearrange(z, "b q n e -> b q (n e)"))
        return rearrange(out, "b (h w) c -> b c h w", h=height, w=width)


ConvTranspose2d = nn.ConvTranspose2d


class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.attention = SelfAttention(channels, num_heads=4)
        self.norm = GroupNorm(1, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.norm(x))


class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        super().__init__()
        self.skip = nn.Identity() if input_channels == output_channels else nn.Conv2d(input_channels, output_channels, 1)
        self.second = nn.Sequential(
            nn.Conv2d(output_channels, output_channels, 3, padding=1), GroupNorm(groups, output_channels), SiLU()
        )
        self.step = nn.Sequential(SiLU(), nn.Linear(step_dim, output_channels))
        self.first = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 3, padding=1), GroupNorm(groups, output_channels), SiLU()
        )

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        step = rearrange(self.step(time_emb), "b c -> b c 1 1")  # used before the first round
        return self.second(self.first(x) + step) + self.skip(x)


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.to_half = nn.Conv2d(channels_out, channels_out, 4, 2, 1) if downsample else nn.Identity()
        self.attention = AttentionBlock(channels_out)
        self.res2 = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.res1 = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert not self.downsample or x.shape[-2] % 2 == x.shape[-1] % 2 == 0, "odd size"
        skip = self.attention(self.res2(self.res1(x, step_emb), step_emb))
        return self.to_half(skip), skip


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        super().__init__()
        self.to_double = ConvTranspose2d(dim_in, dim_in, 4, 2, 1) if upsample else nn.Identity()
        self.attention = AttentionBlock(dim_in)
        self.res2 = ResidualBlock(dim_in, dim_in, time_emb_dim, groups)
        self.res1 = ResidualBlock(2 * dim_out, dim_in, time_emb_dim, groups)

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        h = torch.cat([skip, x], dim=1)
        return self.to_double(self.attention(self.res2(self.res1(h, step_emb), step_emb)))


class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.res2 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        self.attention = AttentionBlock(mid_dim)
        self.res1 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)

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
        dims = [channels] + [m * channels for m in dim_mults]
        pairs = list(zip(dims[:-1], dims[1:]))
        last = len(pairs) - 1
        self.parts = nn.ModuleDict()
        self.parts["out_conv"] = nn.Conv2d(channels, image_shape[0], 1)
        self.parts["out_res"] = ResidualBlock(channels, channels, emb, groups)
        self.parts["up"] = nn.ModuleList(UpBlock(a, b, emb, groups, True) for a, b in reversed(pairs[1:]))
        self.parts["mid"] = MidBlock(dims[-1], emb, groups)
        self.parts["down"] = nn.ModuleList(DownBlock(a, b, emb, groups, i < last) for i, (a, b) in enumerate(pairs))
        self.parts["in_conv"] = nn.Conv2d(image_shape[0], channels, 7, padding=3)
        self.parts["steps"] = nn.Sequential(
            SinusoidalPositionEmbeddings(max_steps), nn.Linear(max_steps, emb), nn.GELU(), nn.Linear(emb, emb)
        )

    def forward(self, x: torch.Tensor, num_steps: torch.Tensor) -> torch.Tensor:
        p = self.parts
        emb = p["steps"](num_steps)
        h = p["in_conv"](x)
        skips = []
        for down in p["down"]:
            h, skip = down(h, emb)
            skips.append(skip)
        h = p["mid"](h, emb)
        for up in p["up"]:
            h = up(h, emb, skips.pop())
        return p["out_conv"](p["out_res"](h, emb))
