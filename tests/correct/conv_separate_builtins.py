"""Four separate 1x1 `nn.Conv2d` projections `W_Q`, `W_K`, `W_V`, `W_O` with bias, attention with
`torch.einsum` on (b, heads, head_size, h, w) tensors; GroupNorm with `torch.std_mean`; the blocks
use torch's `nn.GroupNorm` and `F.silu`; embeddings from `torch.logspace`, interleaved sin/cos;
DownBlock raises ValueError on odd sizes."""

from typing import Optional, Union

import torch
import torch.nn.functional as F
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
        b, c, h, w = x.shape
        g = x.reshape(b, self.num_groups, c // self.num_groups, h, w)
        std, mean = torch.std_mean(g, dim=(2, 3, 4), correction=0, keepdim=True)
        out = ((g - mean) / torch.sqrt(std**2 + self.eps)).reshape(b, c, h, w)
        if self.affine:
            out = torch.addcmul(self.bias.view(1, -1, 1, 1), out, self.weight.view(1, -1, 1, 1))
        return out


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        half = embedding_size // 2
        # 10000^(-2k/d) = 10^(-4 * 2k/d) for k = 0 .. d/2 - 1
        self.register_buffer("frequencies", torch.logspace(0, -4 * 2 * (half - 1) / embedding_size, half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch,) -> (batch, embedding_size) as sin, cos pairs"""
        angles = x.float()[:, None] * self.frequencies
        return torch.stack([angles.sin(), angles.cos()], dim=2).flatten(1)


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
        self.head_size = channels // num_heads
        self.W_Q = nn.Conv2d(channels, channels, 1)
        self.W_K = nn.Conv2d(channels, channels, 1)
        self.W_V = nn.Conv2d(channels, channels, 1)
        self.W_O = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        b, c, h, w = x.shape
        heads = lambda y: y.view(b, self.num_heads, self.head_size, h, w)
        q, k, v = heads(self.W_Q(x)), heads(self.W_K(x)), heads(self.W_V(x))
        scores = torch.einsum("bneij,bnekl->bnijkl", q, k) / self.head_size**0.5
        # softmax over every key pixel (k, l) of the image
        attn = scores.reshape(b, self.num_heads, h, w, h * w).softmax(dim=-1).reshape(scores.shape)
        z = torch.einsum("bnijkl,bnekl->bneij", attn, v).reshape(b, c, h, w)
        return self.W_O(z)


ConvTranspose2d = nn.ConvTranspose2d


class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups=1, num_channels=channels)
        self.attention = SelfAttention(channels, num_heads=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.norm(x))


class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, output_channels, 3, padding=1)
        self.norm1 = nn.GroupNorm(groups, output_channels)
        self.emb_proj = nn.Linear(step_dim, output_channels)
        self.conv2 = nn.Conv2d(output_channels, output_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, output_channels)
        self.residual = (
            nn.Identity() if input_channels == output_channels else nn.Conv2d(input_channels, output_channels, 1)
        )

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        h = h + self.emb_proj(F.silu(time_emb)).view(h.shape[0], -1, 1, 1)
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.residual(x)


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.block1 = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)
        self.block2 = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.attention = AttentionBlock(channels_out)
        self.downsample = nn.Conv2d(channels_out, channels_out, 4, 2, 1) if downsample else nn.Identity()

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.downsample, nn.Conv2d) and (x.shape[-1] % 2 or x.shape[-2] % 2):
            raise ValueError(f"expected an even height and width, got {tuple(x.shape[-2:])}")
        skip = self.attention(self.block2(self.block1(x, step_emb), step_emb))
        return self.downsample(skip), skip


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        super().__init__()
        self.block1 = ResidualBlock(2 * dim_out, dim_in, time_emb_dim, groups)
        self.block2 = ResidualBlock(dim_in, dim_in, time_emb_dim, groups)
        self.attention = AttentionBlock(dim_in)
        self.upsample = nn.ConvTranspose2d(dim_in, dim_in, 4, 2, 1) if upsample else nn.Identity()

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, skip], dim=1)
        h = self.attention(self.block2(self.block1(h, step_emb), step_emb))
        return self.upsample(h)


class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.block1 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        self.attention = AttentionBlock(mid_dim)
        self.block2 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor):
        return self.block2(self.attention(self.block1(x, step_emb)), step_emb)


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
        self.embedding = SinusoidalPositionEmbeddings(max_steps)
        self.mlp = nn.Sequential(nn.Linear(max_steps, emb_dim), nn.GELU(), nn.Linear(emb_dim, emb_dim))
        self.stem = nn.Conv2d(image_shape[0], channels, 7, padding=3)
        dims = [channels] + [m * channels for m in dim_mults]
        pairs = list(zip(dims, dims[1:]))
        self.downs = nn.ModuleList(
            DownBlock(c_in, c_out, emb_dim, groups, i < len(pairs) - 1) for i, (c_in, c_out) in enumerate(pairs)
        )
        self.mid = MidBlock(dims[-1], emb_dim, groups)
        self.ups = nn.ModuleList(UpBlock(c_in, c_out, emb_dim, groups, True) for c_in, c_out in reversed(pairs[1:]))
        self.final_res = ResidualBlock(channels, channels, emb_dim, groups)
        self.final_conv = nn.Conv2d(channels, image_shape[0], 1)

    def forward(self, x: torch.Tensor, num_steps: torch.Tensor) -> torch.Tensor:
        emb = self.mlp(self.embedding(num_steps))
        h = self.stem(x)
        skips = []
        for down in self.downs:
            h, s = down(h, emb)
            skips.append(s)
        h = self.mid(h, emb)
        for up in self.ups:
            h = up(h, emb, skips.pop())
        return self.final_conv(self.final_res(h, emb))
