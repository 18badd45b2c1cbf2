"""Mixed projection kinds: queries, keys and values from `nn.Linear` layers on the flattened pixels,
the output projection a 1x1 `nn.Conv2d` applied after the image is rebuilt; GroupNorm sums with
fancy_einsum; embeddings written into alternate columns; the Unet zips its up blocks with the
reversed skips."""

import math
from typing import Optional, Union

import torch as t
import torch.nn.functional as F
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
            self.weight = nn.Parameter(t.empty(num_channels, device=device, dtype=dtype))
            self.bias = nn.Parameter(t.empty(num_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialize the weight and bias, if applicable."""
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: t.Tensor) -> t.Tensor:
        """x: (batch, channels, height, width) -> same shape"""
        grouped = rearrange(x, "b (g c) h w -> b g (c h w)", g=self.num_groups)
        n = grouped.shape[-1]
        mean = einsum("b g n -> b g", grouped) / n
        centred = grouped - mean[..., None]
        var = einsum("b g n, b g n -> b g", centred, centred) / n
        normed = centred / t.sqrt(var[..., None] + self.eps)
        normed = rearrange(normed, "b g (c h w) -> b (g c) h w", h=x.shape[2], w=x.shape[3])
        if self.affine:
            normed = einsum("b c h w, c -> b c h w", normed, self.weight) + self.bias[:, None, None]
        return normed


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        self.embedding_size = embedding_size
        k = t.arange(embedding_size // 2)
        self.register_buffer("omega", t.exp(-math.log(10000) * 2 * k / embedding_size))

    def forward(self, x: t.Tensor) -> t.Tensor:
        """x: (batch,) -> (batch, embedding_size) = [sin w0 x, cos w0 x, sin w1 x, cos w1 x, ...]"""
        angles = einsum("batch, k -> batch k", x.float(), self.omega)
        out = t.zeros(x.shape[0], self.embedding_size, device=x.device)
        out[:, ::2] = t.sin(angles)
        out[:, 1::2] = t.cos(angles)
        return out


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
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: t.Tensor) -> t.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        height, width = x.shape[-2:]
        pixels = rearrange(x, "b c h w -> b (h w) c")
        q = rearrange(self.to_q(pixels), "b s (n e) -> b n s e", n=self.num_heads)
        k = rearrange(self.to_k(pixels), "b s (n e) -> b n s e", n=self.num_heads)
        v = rearrange(self.to_v(pixels), "b s (n e) -> b n s e", n=self.num_heads)
        scores = einsum("b n q e, b n k e -> b n q k", q, k)
        pattern = F.softmax(scores / math.sqrt(self.head_size), dim=-1)
        z = einsum("b n q k, b n k e -> b n q e", pattern, v)
        image = rearrange(z, "b n (h w) e -> b (n e) h w", h=height, w=width)
        return self.to_out(image)


ConvTranspose2d = nn.ConvTranspose2d


class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = GroupNorm(1, channels)
        self.attention = SelfAttention(channels)

    def forward(self, x: t.Tensor) -> t.Tensor:
        return x + self.attention(self.norm(x))


class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, output_channels, 3, padding=1)
        self.norm1 = GroupNorm(groups, output_channels)
        self.conv2 = nn.Conv2d(output_channels, output_channels, 3, padding=1)
        self.norm2 = GroupNorm(groups, output_channels)
        self.silu = SiLU()
        self.emb = nn.Linear(step_dim, output_channels)
        self.shortcut = nn.Conv2d(input_channels, output_channels, 1) if input_channels != output_channels else nn.Identity()

    def forward(self, x: t.Tensor, time_emb: t.Tensor) -> t.Tensor:
        h = self.silu(self.norm1(self.conv1(x)))
        h = h + self.emb(self.silu(time_emb)).view(-1, h.shape[1], 1, 1)
        h = self.silu(self.norm2(self.conv2(h)))
        return h + self.shortcut(x)


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.res1 = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)
        self.res2 = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.attn = AttentionBlock(channels_out)
        self.conv = nn.Conv2d(channels_out, channels_out, 4, 2, 1) if downsample else nn.Identity()

    def forward(self, x: t.Tensor, step_emb: t.Tensor) -> tuple[t.Tensor, t.Tensor]:
        assert not self.downsample or (x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0)
        skip = self.attn(self.res2(self.res1(x, step_emb), step_emb))
        return self.conv(skip), skip


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        super().__init__()
        self.res1 = ResidualBlock(2 * dim_out, dim_in, time_emb_dim, groups)
        self.res2 = ResidualBlock(dim_in, dim_in, time_emb_dim, groups)
        self.attn = AttentionBlock(dim_in)
        self.conv = ConvTranspose2d(dim_in, dim_in, 4, 2, 1) if upsample else nn.Identity()

    def forward(self, x: t.Tensor, step_emb: t.Tensor, skip: t.Tensor) -> t.Tensor:
        h = t.cat([x, skip], dim=1)
        return self.conv(self.attn(self.res2(self.res1(h, step_emb), step_emb)))


class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.res1 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        self.attn = AttentionBlock(mid_dim)
        self.res2 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)

    def forward(self, x: t.Tensor, step_emb: t.Tensor):
        return self.res2(self.attn(self.res1(x, step_emb)), step_emb)


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
        self.step_mlp = nn.Sequential(
            SinusoidalPositionEmbeddings(max_steps), nn.Linear(max_steps, emb), nn.GELU(), nn.Linear(emb, emb)
        )
        self.conv_in = nn.Conv2d(image_shape[0], channels, 7, padding=3)
        dims = [channels] + [m * channels for m in dim_mults]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList(
            [DownBlock(c_in, c_out, emb, groups, downsample=i < len(pairs) - 1) for i, (c_in, c_out) in enumerate(pairs)]
        )
        self.mid = MidBlock(dims[-1], emb, groups)
        # ups[j] matches downs[-1 - j]; there is none for downs[0]
        self.ups = nn.ModuleList([UpBlock(c_in, c_out, emb, groups, upsample=True) for c_in, c_out in pairs[:0:-1]])
        self.res_out = ResidualBlock(channels, channels, emb, groups)
        self.conv_out = nn.Conv2d(channels, image_shape[0], 1)

    def forward(self, x: t.Tensor, num_steps: t.Tensor) -> t.Tensor:
        emb = self.step_mlp(num_steps)
        h = self.conv_in(x)
        skips = []
        for down in self.downs:
            h, skip = down(h, emb)
            skips.append(skip)
        h = self.mid(h, emb)
        for up, skip in zip(self.ups, skips[::-1]):
            h = up(h, emb, skip)
        return self.conv_out(self.res_out(h, emb))
