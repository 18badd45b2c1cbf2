"""Separate projections named `query`, `key`, `value` and `proj`, created in the order proj, value,
key, query and applied in the order value, key, query, attention with the `@` operator; residual
blocks create their layers in reverse order of use; blocks keep their parts in `nn.ModuleList`s;
embeddings interleave cos and sin and compute the frequencies in forward."""

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
        if num_channels % num_groups:
            raise ValueError("num_channels must be divisible by num_groups")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
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
        n, c, h, w = x.shape
        groups = x.view(n, self.num_groups, -1)
        mu = groups.mean(-1, keepdim=True)
        sigma2 = ((groups - mu) ** 2).mean(-1, keepdim=True)
        y = ((groups - mu) / (sigma2 + self.eps).sqrt()).view(n, c, h, w)
        if self.weight is not None:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        assert embedding_size % 2 == 0
        self.d = embedding_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch,) -> (batch, d) = [cos w0 x, sin w0 x, cos w1 x, sin w1 x, ...]"""
        two_k = torch.arange(0, self.d, 2, device=x.device).float()
        w = torch.exp(-math.log(10000.0) * two_k / self.d)
        angles = x.float().unsqueeze(1) * w.unsqueeze(0)
        out = torch.empty(x.shape[0], self.d, device=x.device)
        out[:, 0::2] = angles.cos()
        out[:, 1::2] = angles.sin()
        return out


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
        self.head_dim = channels // num_heads
        self.proj = nn.Linear(channels, channels)
        self.value = nn.Linear(channels, channels)
        self.key = nn.Linear(channels, channels)
        self.query = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        B, C, H, W = x.shape
        x = x.reshape(B, C, H * W).permute(0, 2, 1)  # (B, T, C) with T = H*W pixels

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(B, H * W, self.num_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)

        v = heads(self.value(x))  # used in the order value, key, query
        k = heads(self.key(x))
        q = heads(self.query(x))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        att = att.softmax(dim=-1)
        y = att @ v  # (B, nh, T, hd)
        y = y.transpose(1, 2).contiguous().view(B, H * W, C)
        y = self.proj(y)
        return y.permute(0, 2, 1).reshape(B, C, H, W)


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
        """Layers are created from the output backwards."""
        super().__init__()
        if input_channels == output_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Conv2d(input_channels, output_channels, 1)
        self.norm2 = GroupNorm(groups, output_channels)
        self.conv2 = nn.Conv2d(output_channels, output_channels, 3, padding=1)
        self.emb_layers = nn.ModuleList([SiLU(), nn.Linear(step_dim, output_channels)])
        self.act = SiLU()
        self.norm1 = GroupNorm(groups, output_channels)
        self.conv1 = nn.Conv2d(input_channels, output_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm1(self.conv1(x)))
        e = time_emb
        for layer in self.emb_layers:
            e = layer(e)
        h = h + e[:, :, None, None]
        h = self.act(self.norm2(self.conv2(h)))
        return self.shortcut(x) + h


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            [
                ResidualBlock(channels_in, channels_out, time_emb_dim, groups),
                ResidualBlock(channels_out, channels_out, time_emb_dim, groups),
            ]
        )
        self.attention = AttentionBlock(channels_out)
        self.downsamplers = nn.ModuleList(
            [nn.Conv2d(channels_out, channels_out, kernel_size=4, stride=2, padding=1)] if downsample else []
        )

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.downsamplers):
            assert x.shape[-2] % 2 == 0, "height must be even"
            assert x.shape[-1] % 2 == 0, "width must be even"
        for resnet in self.resnets:
            x = resnet(x, step_emb)
        skip = self.attention(x)
        out = skip
        for down in self.downsamplers:
            out = down(out)
        return out, skip


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            [
                ResidualBlock(2 * dim_out, dim_in, time_emb_dim, groups),
                ResidualBlock(dim_in, dim_in, time_emb_dim, groups),
            ]
        )
        self.attention = AttentionBlock(dim_in)
        self.upsamplers = nn.ModuleList([ConvTranspose2d(dim_in, dim_in, 4, 2, 1)] if upsample else [])

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x, skip], dim=1)
        for resnet in self.resnets:
            x = resnet(x, step_emb)
        x = self.attention(x)
        for up in self.upsamplers:
            x = up(x)
        return x


class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups), ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)]
        )
        self.attention = AttentionBlock(mid_dim)

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor):
        x = self.resnets[0](x, step_emb)
        x = self.attention(x)
        return self.resnets[1](x, step_emb)


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
        self.time_embedding = nn.ModuleList(
            [SinusoidalPositionEmbeddings(max_steps), nn.Linear(max_steps, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim)]
        )
        self.conv_in = nn.Conv2d(image_shape[0], channels, kernel_size=7, padding=3)
        dims = [channels, *[m * channels for m in dim_mults]]
        in_out = list(zip(dims[:-1], dims[1:]))
        self.down_blocks = nn.ModuleList(
            [DownBlock(a, b, time_dim, groups, downsample=(i + 1 < len(in_out))) for i, (a, b) in enumerate(in_out)]
        )
        self.mid_block = MidBlock(dims[-1], time_dim, groups)
        self.up_blocks = nn.ModuleList([UpBlock(a, b, time_dim, groups, upsample=True) for a, b in in_out[1:][::-1]])
        self.conv_out = nn.ModuleList(
            [ResidualBlock(channels, channels, time_dim, groups), nn.Conv2d(channels, image_shape[0], 1)]
        )

    def forward(self, x: torch.Tensor, num_steps: torch.Tensor) -> torch.Tensor:
        emb = num_steps
        for layer in self.time_embedding:
            emb = layer(emb)
        h = self.conv_in(x)
        skips = []
        for block in self.down_blocks:
            h, skip = block(h, emb)
            skips.append(skip)
        h = self.mid_block(h, emb)
        for block in self.up_blocks:
            h = block(h, emb, skips.pop())
        res, conv = self.conv_out
        return conv(res(h, emb))
