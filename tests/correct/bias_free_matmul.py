"""Separate query, key, value and output projections `nn.Linear(C, C, bias=False)`, attention with
`torch.matmul`; GroupNorm statistics with einops `reduce`; a DownBlock without any check of the
height; the Unet creates its step MLP last."""

from typing import Optional, Union

import torch as t
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
            self.weight, self.bias = None, None

    def reset_parameters(self) -> None:
        """Initialize the weight and bias, if applicable."""
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: t.Tensor) -> t.Tensor:
        """x: (batch, channels, height, width) -> same shape"""
        g = self.num_groups
        mean = reduce(x, "b (g c) h w -> b g 1 1 1", "mean", g=g)
        grouped = rearrange(x, "b (g c) h w -> b g c h w", g=g)
        centred = grouped - mean
        var = reduce(centred**2, "b g c h w -> b g 1 1 1", "mean")
        out = rearrange(centred / t.sqrt(var + self.eps), "b g c h w -> b (g c) h w")
        if self.affine:
            out = out * rearrange(self.weight, "c -> 1 c 1 1") + rearrange(self.bias, "c -> 1 c 1 1")
        return out


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        k = t.arange(embedding_size // 2)
        self.register_buffer("omega", 1 / (10000 ** (2 * k / embedding_size)))

    def forward(self, x: t.Tensor) -> t.Tensor:
        """x: (batch,) -> (batch, embedding_size): all sines, then all cosines"""
        angles = x[:, None].to(self.omega.dtype) * self.omega[None, :]
        return t.cat([t.sin(angles), t.cos(angles)], dim=1)


def swish(x: t.Tensor) -> t.Tensor:
    return x * t.sigmoid(x)


class SiLU(nn.Module):
    def forward(self, x: t.Tensor) -> t.Tensor:
        return swish(x)


class SelfAttention(nn.Module):
    def __init__(self, channels: int, num_heads: int = 4):
        """Self-Attention with two spatial dimensions, projections without bias.

        channels: the number of channels. Should be divisible by the number of heads.
        """
        super().__init__()
        assert channels % num_heads == 0
        self.num_heads = num_heads
        self.head_size = channels // num_heads
        self.W_Q = nn.Linear(channels, channels, bias=False)
        self.W_K = nn.Linear(channels, channels, bias=False)
        self.W_V = nn.Linear(channels, channels, bias=False)
        self.W_O = nn.Linear(channels, channels, bias=False)

    def forward(self, x: t.Tensor) -> t.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (b, h*w, c)
        split = lambda y: rearrange(y, "b s (n e) -> b n s e", n=self.num_heads)
        q, k, v = split(self.W_Q(tokens)), split(self.W_K(tokens)), split(self.W_V(tokens))
        scores = t.matmul(q, k.transpose(-1, -2)) / self.head_size**0.5  # (b, n, s_q, s_k)
        pattern = scores.softmax(dim=-1)
        z = t.matmul(pattern, v)  # (b, n, s, e)
        out = self.W_O(rearrange(z, "b n s e -> b s (n e)"))
        return out.transpose(1, 2).reshape(b, c, h, w)


ConvTranspose2d = nn.ConvTranspose2d


class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = GroupNorm(1, channels)
        self.attention = SelfAttention(channels, num_heads=4)

    def forward(self, x: t.Tensor) -> t.Tensor:
        return x + self.attention(self.norm(x))


class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, output_channels, kernel_size=3, padding=1)
        self.norm1 = GroupNorm(groups, output_channels)
        self.silu = SiLU()
        self.step_proj = nn.Linear(step_dim, output_channels)
        self.conv2 = nn.Conv2d(output_channels, output_channels, kernel_size=3, padding=1)
        self.norm2 = GroupNorm(groups, output_channels)
        self.res_conv = (
            nn.Conv2d(input_channels, output_channels, kernel_size=1)
            if input_channels != output_channels
            else nn.Identity()
        )

    def forward(self, x: t.Tensor, time_emb: t.Tensor) -> t.Tensor:
        h = self.silu(self.norm1(self.conv1(x)))
        h = h + rearrange(self.step_proj(self.silu(time_emb)), "b c -> b c 1 1")
        h = self.silu(self.norm2(self.conv2(h)))
        return h + self.res_conv(x)


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.res1 = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)
        self.res2 = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.attn = AttentionBlock(channels_out)
        self.down = nn.Conv2d(channels_out, channels_out, 4, stride=2, padding=1) if downsample else nn.Identity()

    def forward(self, x: t.Tensor, step_emb: t.Tensor) -> tuple[t.Tensor, t.Tensor]:
        """(downsampled output, full-size skip); the caller gives even heights and widths."""
        x = self.res1(x, step_emb)
        x = self.res2(x, step_emb)
        skip = self.attn(x)
        return self.down(skip), skip


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        super().__init__()
        self.res1 = ResidualBlock(2 * dim_out, dim_in, time_emb_dim, groups)
        self.res2 = ResidualBlock(dim_in, dim_in, time_emb_dim, groups)
        self.attn = AttentionBlock(dim_in)
        self.up = ConvTranspose2d(dim_in, dim_in, 4, stride=2, padding=1) if upsample else nn.Identity()

    def forward(self, x: t.Tensor, step_emb: t.Tensor, skip: t.Tensor) -> t.Tensor:
        x = t.cat([x, skip], dim=1)
        x = self.res2(self.res1(x, step_emb), step_emb)
        return self.up(self.attn(x))


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
        emb_dim = 4 * channels
        self.in_conv = nn.Conv2d(image_shape[0], channels, 7, padding=3)
        dims = [channels] + [m * channels for m in dim_mults]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.down_blocks = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(pairs):
            self.down_blocks.append(DownBlock(c_in, c_out, emb_dim, groups, downsample=i < len(pairs) - 1))
        self.mid_block = MidBlock(dims[-1], emb_dim, groups)
        self.up_blocks = nn.ModuleList()
        for c_in, c_out in reversed(pairs[1:]):
            self.up_blocks.append(UpBlock(c_in, c_out, emb_dim, groups, upsample=True))
        self.out_res = ResidualBlock(channels, channels, emb_dim, groups)
        self.out_conv = nn.Conv2d(channels, image_shape[0], 1)
        self.step_mlp = nn.Sequential(
            SinusoidalPositionEmbeddings(max_steps),
            nn.Linear(max_steps, emb_dim),
            nn.GELU(),
            nn.Linear(emb_dim, emb_dim),
        )

    def forward(self, x: t.Tensor, num_steps: t.Tensor) -> t.Tensor:
        emb = self.step_mlp(num_steps)
        x = self.in_conv(x)
        stack = []
        for block in self.down_blocks:
            x, skip = block(x, emb)
            stack.append(skip)
        x = self.mid_block(x, emb)
        for block in self.up_blocks:
            x = block(x, emb, stack.pop())
        return self.out_conv(self.out_res(x, emb))
