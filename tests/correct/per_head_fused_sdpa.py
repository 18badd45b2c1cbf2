"""A fused `nn.Linear(C, 3C)` whose output is laid out per head as `(n three e)` (the convention of
some codebases), attention by `F.scaled_dot_product_attention`; GroupNorm through `F.layer_norm` on a
reshaped view; `F.silu` in the blocks, plain attributes, a DownBlock that returns a list and a Unet
that indexes its skips."""

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
        """A layer norm (without affine) of every (example, group) row, then the per-channel affine.

        x: (batch, channels, height, width) -> same shape"""
        b, c, h, w = x.shape
        rows = x.reshape(b, self.num_groups, (c // self.num_groups) * h * w)
        normed = F.layer_norm(rows, rows.shape[-1:], eps=self.eps).reshape(b, c, h, w)
        if self.affine:
            normed = normed * self.weight.reshape(1, c, 1, 1) + self.bias.reshape(1, c, 1, 1)
        return normed


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        exponents = torch.arange(0, embedding_size, 2, dtype=torch.float32) / embedding_size  # 2k/d
        self.register_buffer("freqs", torch.pow(10000.0, -exponents), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch,) -> (batch, embedding_size) = [sin w0 x, cos w0 x, sin w1 x, cos w1 x, ...]"""
        angles = torch.outer(x.float(), self.freqs)
        return rearrange([angles.sin(), angles.cos()], "two b k -> b (k two)")


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
        assert channels % num_heads == 0, "channels must be divisible by num_heads"
        self.num_heads = num_heads
        # one matmul for everything; the 3C outputs are grouped head by head: (head, q/k/v, head_size)
        self.c_attn = nn.Linear(channels, 3 * channels)
        self.c_proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        _, _, height, width = x.shape
        seq = rearrange(x, "b c h w -> b (h w) c")
        q, k, v = rearrange(self.c_attn(seq), "b s (n three e) -> three b n s e", n=self.num_heads, three=3)
        mixed = F.scaled_dot_product_attention(q, k, v)  # scaled by 1/sqrt(e), softmax over keys
        out = self.c_proj(rearrange(mixed, "b n s e -> b s (n e)"))
        return rearrange(out, "b (h w) c -> b c h w", h=height, w=width)


ConvTranspose2d = nn.ConvTranspose2d


class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.ln = GroupNorm(1, channels)
        self.sa = SelfAttention(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.sa(self.ln(x))
        return out + x


class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        """
        input_channels: number of channels in the input to foward
        output_channels: number of channels in the returned output
        step_dim: embedding dimension size for the number of steps
        groups: number of groups in the GroupNorms
        """
        super().__init__()
        self.c_in, self.c_out = input_channels, output_channels
        self.conv_a = nn.Conv2d(input_channels, output_channels, 3, 1, 1)
        self.gn_a = GroupNorm(groups, output_channels)
        self.emb_linear = nn.Linear(step_dim, output_channels)
        self.conv_b = nn.Conv2d(output_channels, output_channels, 3, 1, 1)
        self.gn_b = GroupNorm(groups, output_channels)
        if input_channels != output_channels:
            self.shortcut = nn.Conv2d(input_channels, output_channels, 1)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        """x: (b, c_in, h, w), time_emb: (b, step_dim) -> (b, c_out, h, w)"""
        h = F.silu(self.gn_a(self.conv_a(x)))
        h = h + self.emb_linear(F.silu(time_emb)).unsqueeze(-1).unsqueeze(-1)
        h = F.silu(self.gn_b(self.conv_b(h)))
        residual = self.shortcut(x) if self.c_in != self.c_out else x
        return h + residual


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.first = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)
        self.second = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.attention = AttentionBlock(channels_out)
        self.conv_down = nn.Conv2d(channels_out, channels_out, 4, 2, 1) if downsample else None

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor) -> list:
        """Returns [downsampled output, full size skip]."""
        if self.conv_down is not None:
            assert x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0, "height and width must be even"
        x = self.first(x, step_emb)
        x = self.second(x, step_emb)
        skip = self.attention(x)
        out = skip if self.conv_down is None else self.conv_down(skip)
        return [out, skip]


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        """
        IMPORTANT: arguments are with respect to the matching DownBlock.
        """
        super().__init__()
        self.first = ResidualBlock(2 * dim_out, dim_in, time_emb_dim, groups)
        self.second = ResidualBlock(dim_in, dim_in, time_emb_dim, groups)
        self.attention = AttentionBlock(dim_in)
        self.conv_up = nn.ConvTranspose2d(dim_in, dim_in, 4, 2, 1) if upsample else None

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat((x, skip), 1)
        x = self.first(x, step_emb)
        x = self.second(x, step_emb)
        x = self.attention(x)
        if self.conv_up is not None:
            x = self.conv_up(x)
        return x


class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.first = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        self.attention = AttentionBlock(mid_dim)
        self.second = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor):
        return self.second(self.attention(self.first(x, step_emb)), step_emb)


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
        self.pos = SinusoidalPositionEmbeddings(max_steps)
        self.lin1 = nn.Linear(max_steps, emb)
        self.lin2 = nn.Linear(emb, emb)
        self.conv_in = nn.Conv2d(image_shape[0], channels, 7, padding=3)
        dims = [channels] + [m * channels for m in dim_mults]
        n = len(dim_mults)
        self.downs = nn.ModuleList(DownBlock(dims[i], dims[i + 1], emb, groups, i != n - 1) for i in range(n))
        self.mid = MidBlock(dims[-1], emb, groups)
        # up block j matches down block n - 1 - j
        self.ups = nn.ModuleList(UpBlock(dims[i], dims[i + 1], emb, groups, True) for i in range(n - 1, 0, -1))
        self.res_out = ResidualBlock(channels, channels, emb, groups)
        self.conv_out = nn.Conv2d(channels, image_shape[0], 1)

    def forward(self, x: torch.Tensor, num_steps: torch.Tensor) -> torch.Tensor:
        emb = self.lin2(F.gelu(self.lin1(self.pos(num_steps))))
        h = self.conv_in(x)
        skips = []
        for down in self.downs:
            h, skip = down(h, emb)
            skips.append(skip)
        h = self.mid(h, emb)
        n = len(skips)
        for j, up in enumerate(self.ups):
            h = up(h, emb, skips[n - 1 - j])
        return self.conv_out(self.res_out(h, emb))
