"""A fused 1x1 `nn.Conv2d(C, 3C, 1)` whose output is cut into q, k, v with `chunk` along the
channels, attention with fancy_einsum; GroupNorm through `F.instance_norm` on a (batch, groups,
rest) view; embeddings interleaved cos-first with precomputed frequencies; every block built from
`nn.Sequential` pieces."""

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
            self.reset_parameters()
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        """Initialize the weight and bias, if applicable."""
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: t.Tensor) -> t.Tensor:
        """Instance norm treats every (example, group) row of the (batch, groups, rest) view as one
        instance, which is exactly group norm's statistics.

        x: (batch, channels, height, width) -> same shape"""
        rows = x.reshape(x.shape[0], self.num_groups, -1)
        out = F.instance_norm(rows, eps=self.eps).reshape(x.shape)
        if self.affine:
            out = out * self.weight[:, None, None] + self.bias[:, None, None]
        return out


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        k = t.arange(embedding_size // 2, dtype=t.float32)
        self.register_buffer("w_k", 10000.0 ** (-2.0 * k / embedding_size))

    def forward(self, x: t.Tensor) -> t.Tensor:
        """x: (batch,) -> (batch, embedding_size) = [cos w0 x, sin w0 x, cos w1 x, sin w1 x, ...]"""
        wx = einsum("batch, k -> batch k", x.float(), self.w_k)
        return rearrange(t.stack([wx.cos(), wx.sin()]), "pair batch k -> batch (k pair)")


def swish(x: t.Tensor) -> t.Tensor:
    return t.sigmoid(x) * x


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
        self.to_qkv = nn.Conv2d(channels, channels * 3, 1)
        self.to_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: t.Tensor) -> t.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        q, k, v = self.to_qkv(x).chunk(3, dim=1)  # each (batch, channels, height, width)
        q, k, v = (
            rearrange(y, "batch (head head_size) height width -> batch head (height width) head_size", head=self.num_heads)
            for y in (q, k, v)
        )
        attn_scores = einsum(
            "batch head query head_size, batch head key head_size -> batch head query key", q, k
        ) / (self.head_size**0.5)
        attn_probs = attn_scores.softmax(dim=-1)
        z = einsum("batch head query key, batch head key head_size -> batch head query head_size", attn_probs, v)
        z = rearrange(
            z, "batch head (height width) head_size -> batch (head head_size) height width", height=x.shape[2]
        )
        return self.to_out(z)


ConvTranspose2d = nn.ConvTranspose2d


class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = GroupNorm(1, channels)
        self.attn = SelfAttention(channels)

    def forward(self, x: t.Tensor) -> t.Tensor:
        return x + self.attn(self.norm(x))


class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        super().__init__()
        self.block1 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 3, padding=1), GroupNorm(groups, output_channels), SiLU()
        )
        self.time_mlp = nn.Sequential(SiLU(), nn.Linear(step_dim, output_channels))
        self.block2 = nn.Sequential(
            nn.Conv2d(output_channels, output_channels, 3, padding=1), GroupNorm(groups, output_channels), SiLU()
        )
        self.shortcut = nn.Sequential()  # an empty Sequential is the identity
        if input_channels != output_channels:
            self.shortcut.append(nn.Conv2d(input_channels, output_channels, 1))

    def forward(self, x: t.Tensor, time_emb: t.Tensor) -> t.Tensor:
        h = self.block1(x)
        h = h + self.time_mlp(time_emb)[..., None, None]
        h = self.block2(h)
        return h + self.shortcut(x)


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.res_blocks = nn.ModuleList(
            [
                ResidualBlock(channels_in, channels_out, time_emb_dim, groups),
                ResidualBlock(channels_out, channels_out, time_emb_dim, groups),
            ]
        )
        self.attention = AttentionBlock(channels_out)
        self.down = nn.Sequential(nn.Conv2d(channels_out, channels_out, 4, 2, 1)) if downsample else nn.Sequential()

    def forward(self, x: t.Tensor, step_emb: t.Tensor) -> tuple[t.Tensor, t.Tensor]:
        if self.downsample:
            assert x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0
        for res in self.res_blocks:
            x = res(x, step_emb)
        x = self.attention(x)
        return self.down(x), x


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        super().__init__()
        self.res_blocks = nn.ModuleList(
            [
                ResidualBlock(2 * dim_out, dim_in, time_emb_dim, groups),
                ResidualBlock(dim_in, dim_in, time_emb_dim, groups),
            ]
        )
        self.attention = AttentionBlock(dim_in)
        self.up = nn.Sequential(nn.ConvTranspose2d(dim_in, dim_in, 4, 2, 1)) if upsample else nn.Sequential()

    def forward(self, x: t.Tensor, step_emb: t.Tensor, skip: t.Tensor) -> t.Tensor:
        x = t.cat([x, skip], dim=1)
        for res in self.res_blocks:
            x = res(x, step_emb)
        return self.up(self.attention(x))


class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.res1 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        self.attention = AttentionBlock(mid_dim)
        self.res2 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)

    def forward(self, x: t.Tensor, step_emb: t.Tensor):
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
        time_dim = 4 * channels
        self.time_mlp = nn.Sequential(
            SinusoidalPositionEmbeddings(max_steps),
            nn.Linear(max_steps, time_dim),
            nn.GELU(),
            nn.Linear(time_dim, time_dim),
        )
        self.init_conv = nn.Conv2d(image_shape[0], channels, 7, padding=3)
        dims = [channels, *(channels * m for m in dim_mults)]
        in_out = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList(
            [DownBlock(c_in, c_out, time_dim, groups, downsample=i != len(in_out) - 1) for i, (c_in, c_out) in enumerate(in_out)]
        )
        self.mid = MidBlock(dims[-1], time_dim, groups)
        self.ups = nn.ModuleList([UpBlock(c_in, c_out, time_dim, groups, upsample=True) for c_in, c_out in reversed(in_out[1:])])
        self.final_res = ResidualBlock(channels, channels, time_dim, groups)
        self.final_conv = nn.Conv2d(channels, image_shape[0], 1)

    def forward(self, x: t.Tensor, num_steps: t.Tensor) -> t.Tensor:
        t_emb = self.time_mlp(num_steps)
        x = self.init_conv(x)
        skips = []
        for down in self.downs:
            x, skip = down(x, t_emb)
            skips.append(skip)
        x = self.mid(x, t_emb)
        for up in self.ups:
            x = up(x, t_emb, skips.pop())
        x = self.final_res(x, t_emb)
        return self.final_conv(x)
