"""No einops at all: heads made with `view`/`permute`, a softmax written out with the max
subtracted, separate projections `q`, `k`, `v`, `o` with bias; swish as x / (1 + exp(-x)); the
embedding interleaves sin and cos with `torch.stack(...).view`."""

from typing import Optional, Union

import torch
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
        n = x.shape[0]
        flat = x.contiguous().view(n, self.num_groups, -1)
        mean = flat.mean(dim=2, keepdim=True)
        deviation = flat - mean
        variance = (deviation * deviation).mean(dim=2, keepdim=True)
        out = (deviation / torch.sqrt(variance + self.eps)).view_as(x)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        self.embedding_size = embedding_size
        powers = torch.arange(0, embedding_size, 2).float() / embedding_size
        self.register_buffer("frequencies", 1.0 / (10000.0**powers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch,) -> (batch, embedding_size) = [sin, cos, sin, cos, ...]"""
        angles = torch.outer(x.float(), self.frequencies)  # (batch, d/2)
        return torch.stack((angles.sin(), angles.cos()), dim=-1).view(x.shape[0], self.embedding_size)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x / (1.0 + torch.exp(-x))


class SiLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swish(x)


def softmax(scores: torch.Tensor, dim: int) -> torch.Tensor:
    exps = torch.exp(scores - scores.amax(dim=dim, keepdim=True))
    return exps / exps.sum(dim=dim, keepdim=True)


class SelfAttention(nn.Module):
    def __init__(self, channels: int, num_heads: int = 4):
        """Self-Attention with two spatial dimensions.

        channels: the number of channels. Should be divisible by the number of heads.
        """
        super().__init__()
        assert channels % num_heads == 0
        self.channels = channels
        self.num_heads = num_heads
        self.d_head = channels // num_heads
        self.q = nn.Linear(channels, channels)
        self.k = nn.Linear(channels, channels)
        self.v = nn.Linear(channels, channels)
        self.o = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        batch, channels, height, width = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)  # (b, s, c), row-major pixels

        def split_heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(batch, height * width, self.num_heads, self.d_head).permute(0, 2, 1, 3)  # (b, n, s, e)

        q, k, v = split_heads(self.q(pixels)), split_heads(self.k(pixels)), split_heads(self.v(pixels))
        scores = q.matmul(k.permute(0, 1, 3, 2)) / (self.d_head**0.5)  # (b, n, s_q, s_k)
        weights = softmax(scores, dim=-1)
        heads = weights.matmul(v)  # (b, n, s, e)
        merged = heads.permute(0, 2, 1, 3).reshape(batch, height * width, channels)
        out = self.o(merged)
        return out.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


ConvTranspose2d = nn.ConvTranspose2d


class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = GroupNorm(1, channels)
        self.attention = SelfAttention(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.norm(x))


class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, output_channels, 3, padding=1)
        self.norm1 = GroupNorm(groups, output_channels)
        self.conv2 = nn.Conv2d(output_channels, output_channels, 3, padding=1)
        self.norm2 = GroupNorm(groups, output_channels)
        self.silu = SiLU()
        self.step_linear = nn.Linear(step_dim, output_channels)
        self.shortcut = nn.Identity()
        if input_channels != output_channels:
            self.shortcut = nn.Conv2d(input_channels, output_channels, 1)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        h = self.silu(self.norm1(self.conv1(x)))
        step = self.step_linear(self.silu(time_emb))
        h = h + step.view(step.shape[0], step.shape[1], 1, 1)
        h = self.silu(self.norm2(self.conv2(h)))
        return h + self.shortcut(x)


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.res1 = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)
        self.res2 = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.attention = AttentionBlock(channels_out)
        self.conv = nn.Conv2d(channels_out, channels_out, kernel_size=4, stride=2, padding=1) if downsample else None

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.downsample:
            assert x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0, "can only downsample even sizes"
        skip = self.attention(self.res2(self.res1(x, step_emb), step_emb))
        out = self.conv(skip) if self.downsample else skip
        return out, skip


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        super().__init__()
        self.upsample = upsample
        self.res1 = ResidualBlock(2 * dim_out, dim_in, time_emb_dim, groups)
        self.res2 = ResidualBlock(dim_in, dim_in, time_emb_dim, groups)
        self.attention = AttentionBlock(dim_in)
        self.conv = nn.ConvTranspose2d(dim_in, dim_in, kernel_size=4, stride=2, padding=1) if upsample else None

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        h = torch.cat((x, skip), dim=1)
        h = self.attention(self.res2(self.res1(h, step_emb), step_emb))
        return self.conv(h) if self.upsample else h


class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.res1 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        self.attention = AttentionBlock(mid_dim)
        self.res2 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor):
        x = self.res1(x, step_emb)
        x = self.attention(x)
        x = self.res2(x, step_emb)
        return x


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
        step_dim = 4 * channels
        self.step_embedding = SinusoidalPositionEmbeddings(max_steps)
        self.step_linear1 = nn.Linear(max_steps, step_dim)
        self.step_gelu = nn.GELU()
        self.step_linear2 = nn.Linear(step_dim, step_dim)
        self.conv_in = nn.Conv2d(image_shape[0], channels, kernel_size=7, padding=3)
        dims = [channels] + [m * channels for m in dim_mults]
        self.downs = nn.ModuleList()
        for i in range(len(dim_mults)):
            self.downs.append(DownBlock(dims[i], dims[i + 1], step_dim, groups, downsample=i + 1 < len(dim_mults)))
        self.mid = MidBlock(dims[-1], step_dim, groups)
        self.ups = nn.ModuleList()
        for i in range(len(dim_mults) - 1, 0, -1):
            self.ups.append(UpBlock(dims[i], dims[i + 1], step_dim, groups, upsample=True))
        self.res_out = ResidualBlock(channels, channels, step_dim, groups)
        self.conv_out = nn.Conv2d(channels, image_shape[0], kernel_size=1)

    def forward(self, x: torch.Tensor, num_steps: torch.Tensor) -> torch.Tensor:
        emb = self.step_linear2(self.step_gelu(self.step_linear1(self.step_embedding(num_steps))))
        h = self.conv_in(x)
        stack = []
        for down in self.downs:
            h, skip = down(h, emb)
            stack.append(skip)
        h = self.mid(h, emb)
        for up in self.ups:
            h = up(h, emb, stack.pop())
        return self.conv_out(self.res_out(h, emb))
