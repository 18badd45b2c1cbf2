"""In the style of lucidrains' denoising-diffusion-pytorch: attention with a bias-free fused 1x1
`to_qkv = nn.Conv2d(C, 3C, 1, bias=False)` and a `to_out` 1x1 conv with bias, queries pre-scaled,
`torch.einsum` over (b, h, d, pixels); `Block`/`ResnetBlock` helper classes with torch's
`nn.GroupNorm` and `nn.SiLU`; embeddings computed in forward with exp(-ln(10000) 2k/d)."""

import math
from typing import Optional, Union

import torch
from einops import rearrange
from torch import nn

from w3d4_part1_diffusion_training_solution import DiffusionModel


def exists(x) -> bool:
    return x is not None


class Block(nn.Module):
    """3x3 conv, group norm, SiLU."""

    def __init__(self, dim: int, dim_out: int, groups: int):
        super().__init__()
        self.proj = nn.Conv2d(dim, dim_out, 3, padding=1)
        self.norm = nn.GroupNorm(groups, dim_out)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.proj(x)))


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
            self.weight = nn.Parameter(torch.ones(num_channels, device=device, dtype=dtype))
            self.bias = nn.Parameter(torch.zeros(num_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        """Initialize the weight and bias, if applicable."""
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, height, width) -> same shape"""
        x_g = rearrange(x, "b (g c) h w -> b g (c h w)", g=self.num_groups)
        mean = torch.mean(x_g, dim=-1, keepdim=True)
        var = torch.mean(torch.square(x_g - mean), dim=-1, keepdim=True)
        x_g = (x_g - mean) * (var + self.eps).rsqrt()
        out = x_g.reshape(x.shape)
        if exists(self.weight):
            out = out * rearrange(self.weight, "c -> c 1 1") + rearrange(self.bias, "c -> c 1 1")
        return out


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        self.dim = embedding_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch,) -> (batch, dim): sines then cosines"""
        device = x.device
        half_dim = self.dim // 2
        emb = math.log(10000) * 2 / self.dim
        emb = torch.exp(torch.arange(half_dim, device=device) * -emb)
        emb = x[:, None].float() * emb[None, :]
        return torch.cat((emb.sin(), emb.cos()), dim=-1)


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
        dim_head = channels // num_heads
        assert dim_head * num_heads == channels
        self.scale = dim_head**-0.5
        self.num_heads = num_heads
        self.to_qkv = nn.Conv2d(channels, channels * 3, 1, bias=False)
        self.to_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        b, c, h, w = x.shape
        qkv = self.to_qkv(x).chunk(3, dim=1)
        q, k, v = map(lambda t: rearrange(t, "b (h c) x y -> b h c (x y)", h=self.num_heads), qkv)
        q = q * self.scale
        sim = torch.einsum("b h d i, b h d j -> b h i j", q, k)
        attn = sim.softmax(dim=-1)
        out = torch.einsum("b h i j, b h d j -> b h i d", attn, v)
        out = rearrange(out, "b h (x y) d -> b (h d) x y", x=h, y=w)
        return self.to_out(out)


ConvTranspose2d = nn.ConvTranspose2d


class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.fn = SelfAttention(channels, num_heads=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x)) + x


class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(step_dim, output_channels))
        self.block1 = Block(input_channels, output_channels, groups=groups)
        self.block2 = Block(output_channels, output_channels, groups=groups)
        self.res_conv = nn.Conv2d(input_channels, output_channels, 1) if input_channels != output_channels else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x)
        time_emb = self.mlp(time_emb)
        h = h + rearrange(time_emb, "b c -> b c 1 1")
        h = self.block2(h)
        return h + self.res_conv(x)


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.block1 = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)
        self.block2 = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.attn = AttentionBlock(channels_out)
        self.downsample = nn.Conv2d(channels_out, channels_out, 4, 2, 1) if downsample else nn.Identity()

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(self.downsample, nn.Identity):
            assert all(n % 2 == 0 for n in x.shape[-2:]), f"dimensions {tuple(x.shape[-2:])} must be divisible by 2"
        x = self.block1(x, step_emb)
        x = self.block2(x, step_emb)
        h = self.attn(x)
        return self.downsample(h), h


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        super().__init__()
        self.block1 = ResidualBlock(dim_out * 2, dim_in, time_emb_dim, groups)
        self.block2 = ResidualBlock(dim_in, dim_in, time_emb_dim, groups)
        self.attn = AttentionBlock(dim_in)
        self.upsample = nn.ConvTranspose2d(dim_in, dim_in, 4, 2, 1) if upsample else nn.Identity()

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat((x, skip), dim=1)
        x = self.block1(x, step_emb)
        x = self.block2(x, step_emb)
        x = self.attn(x)
        return self.upsample(x)


class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.mid_block1 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        self.mid_attn = AttentionBlock(mid_dim)
        self.mid_block2 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor):
        x = self.mid_block1(x, step_emb)
        x = self.mid_attn(x)
        return self.mid_block2(x, step_emb)


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
        input_channels = image_shape[0]
        self.init_conv = nn.Conv2d(input_channels, channels, 7, padding=3)
        dims = [channels, *map(lambda m: channels * m, dim_mults)]
        in_out = list(zip(dims[:-1], dims[1:]))
        time_dim = channels * 4
        self.time_mlp = nn.Sequential(
            SinusoidalPositionEmbeddings(max_steps),
            nn.Linear(max_steps, time_dim),
            nn.GELU(),
            nn.Linear(time_dim, time_dim),
        )
        self.downs = nn.ModuleList([])
        self.ups = nn.ModuleList([])
        num_resolutions = len(in_out)
        for ind, (dim_in, dim_out) in enumerate(in_out):
            is_last = ind >= (num_resolutions - 1)
            self.downs.append(DownBlock(dim_in, dim_out, time_dim, groups, downsample=not is_last))
        mid_dim = dims[-1]
        self.mid = MidBlock(mid_dim, time_dim, groups)
        for dim_in, dim_out in reversed(in_out[1:]):
            self.ups.append(UpBlock(dim_in, dim_out, time_dim, groups, upsample=True))
        self.final_res_block = ResidualBlock(channels, channels, time_dim, groups)
        self.final_conv = nn.Conv2d(channels, input_channels, 1)

    def forward(self, x: torch.Tensor, num_steps: torch.Tensor) -> torch.Tensor:
        x = self.init_conv(x)
        t = self.time_mlp(num_steps)
        h = []
        for down in self.downs:
            x, skip = down(x, t)
            h.append(skip)
        x = self.mid(x, t)
        for up in self.ups:
            x = up(x, t, h.pop())
        x = self.final_res_block(x, t)
        return self.final_conv(x)
