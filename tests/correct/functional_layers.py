"""Functional style: the blocks own `nn.Conv2d`, `nn.Linear`, `GroupNorm` and `nn.ConvTranspose2d`
layers for their parameters but apply them with `F.conv2d`, `F.linear`, `F.group_norm`,
`F.conv_transpose2d`, `F.silu` and `F.gelu`; the embedding comes from `torch.polar` (cos, sin
pairs); swish with `torch.special.expit`."""

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
        x = rearrange(x, "b (g c) h w -> b g c h w", g=self.num_groups)
        mean = x.mean(dim=(2, 3, 4), keepdim=True)
        var = x.var(dim=(2, 3, 4), keepdim=True, unbiased=False)
        x = rearrange((x - mean) * torch.rsqrt(var + self.eps), "b g c h w -> b (g c) h w")
        if self.affine:
            x = x * self.weight[:, None, None] + self.bias[:, None, None]
        return x


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        self.embedding_size = embedding_size
        k = torch.arange(embedding_size // 2, dtype=torch.float32)
        self.register_buffer("frequencies", 10000.0 ** (-2 * k / embedding_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch,) -> (batch, embedding_size) = [cos w0 x, sin w0 x, cos w1 x, sin w1 x, ...]

        e^(i w x) has real part cos(w x) and imaginary part sin(w x)."""
        angles = x.float()[:, None] * self.frequencies
        unit = torch.polar(torch.ones_like(angles), angles)
        return torch.view_as_real(unit).flatten(1)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.special.expit(x)


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
        self.W_Q = nn.Linear(channels, channels)
        self.W_K = nn.Linear(channels, channels)
        self.W_V = nn.Linear(channels, channels)
        self.W_O = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        height = x.shape[2]
        tokens = rearrange(x, "b c h w -> b (h w) c")
        q, k, v = (
            rearrange(F.linear(tokens, layer.weight, layer.bias), "b s (n e) -> b n s e", n=self.num_heads)
            for layer in (self.W_Q, self.W_K, self.W_V)
        )
        weights = F.softmax(q @ k.mT / self.head_size**0.5, dim=-1)
        z = rearrange(weights @ v, "b n s e -> b s (n e)")
        out = F.linear(z, self.W_O.weight, self.W_O.bias)
        return rearrange(out, "b (h w) c -> b c h w", h=height)


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
        self.groups = groups
        self.conv1 = nn.Conv2d(input_channels, output_channels, 3, padding=1)
        self.norm1 = GroupNorm(groups, output_channels)
        self.step = nn.Linear(step_dim, output_channels)
        self.conv2 = nn.Conv2d(output_channels, output_channels, 3, padding=1)
        self.norm2 = GroupNorm(groups, output_channels)
        self.shortcut = nn.Conv2d(input_channels, output_channels, 1) if input_channels != output_channels else None

    def _round(self, x: torch.Tensor, conv: nn.Conv2d, norm: GroupNorm) -> torch.Tensor:
        h = F.conv2d(x, conv.weight, conv.bias, padding=1)
        return F.silu(F.group_norm(h, self.groups, norm.weight, norm.bias, norm.eps))

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        h = self._round(x, self.conv1, self.norm1)
        h = h + F.linear(F.silu(time_emb), self.step.weight, self.step.bias)[:, :, None, None]
        h = self._round(h, self.conv2, self.norm2)
        if self.shortcut is None:
            return h + x
        return h + F.conv2d(x, self.shortcut.weight, self.shortcut.bias)


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.res1 = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)
        self.res2 = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.attention = AttentionBlock(channels_out)
        self.down = nn.Conv2d(channels_out, channels_out, 4, stride=2, padding=1) if downsample else None

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.down is not None:
            assert x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0, "height and width must be even"
        skip = self.attention(self.res2(self.res1(x, step_emb), step_emb))
        if self.down is None:
            return skip, skip
        return F.conv2d(skip, self.down.weight, self.down.bias, stride=2, padding=1), skip


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        super().__init__()
        self.res1 = ResidualBlock(2 * dim_out, dim_in, time_emb_dim, groups)
        self.res2 = ResidualBlock(dim_in, dim_in, time_emb_dim, groups)
        self.attention = AttentionBlock(dim_in)
        self.up = nn.ConvTranspose2d(dim_in, dim_in, 4, stride=2, padding=1) if upsample else None

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        h = self.attention(self.res2(self.res1(torch.cat([x, skip], dim=1), step_emb), step_emb))
        if self.up is None:
            return h
        return F.conv_transpose2d(h, self.up.weight, self.up.bias, stride=2, padding=1)


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
        self.embed = SinusoidalPositionEmbeddings(max_steps)
        self.step_in = nn.Linear(max_steps, emb)
        self.step_out = nn.Linear(emb, emb)
        self.conv_in = nn.Conv2d(image_shape[0], channels, 7, padding=3)
        dims = [channels] + [m * channels for m in dim_mults]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList(
            DownBlock(c_in, c_out, emb, groups, downsample=i < len(pairs) - 1) for i, (c_in, c_out) in enumerate(pairs)
        )
        self.mid = MidBlock(dims[-1], emb, groups)
        self.ups = nn.ModuleList(UpBlock(c_in, c_out, emb, groups, upsample=True) for c_in, c_out in reversed(pairs[1:]))
        self.res_out = ResidualBlock(channels, channels, emb, groups)
        self.conv_out = nn.Conv2d(channels, image_shape[0], 1)

    def forward(self, x: torch.Tensor, num_steps: torch.Tensor) -> torch.Tensor:
        emb = F.linear(self.embed(num_steps), self.step_in.weight, self.step_in.bias)
        emb = F.linear(F.gelu(emb), self.step_out.weight, self.step_out.bias)
        h = F.conv2d(x, self.conv_in.weight, self.conv_in.bias, padding=3)
        skips = []
        for down in self.downs:
            h, skip = down(h, emb)
            skips.append(skip)
        h = self.mid(h, emb)
        for up in self.ups:
            h = up(h, emb, skips.pop())
        return F.conv2d(self.res_out(h, emb), self.conv_out.weight, self.conv_out.bias)
