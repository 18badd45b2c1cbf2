"""In the style of timm's ViT attention: one `qkv = nn.Linear(C, 3C)` reshaped to
(batch, seq, 3, heads, head_size), permuted and `unbind`, scores with `@`, output `proj`; swish through
tanh (sigmoid(x) = (1 + tanh(x/2)) / 2); GroupNorm on an `unflatten`ed view; blocks with plain
attributes created in scrambled order; the skip goes first in the concatenation."""

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
        groups = x.unflatten(1, (self.num_groups, -1)).flatten(2)  # (batch, groups, c/g * h * w)
        mean = groups.mean(dim=-1, keepdim=True)
        var = torch.var(groups, dim=-1, keepdim=True, correction=0)
        out = ((groups - mean) / (var + self.eps).sqrt()).view(x.shape)
        if self.affine:
            out = out * self.weight.view(-1, 1, 1) + self.bias.view(-1, 1, 1)
        return out


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        self.embedding_size = embedding_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch,) -> (batch, embedding_size): cosines, then sines"""
        half = self.embedding_size // 2
        exponent = torch.arange(half, device=x.device, dtype=torch.float32) * 2 / self.embedding_size
        angles = x.float()[:, None] * 10000.0 ** (-exponent)[None, :]
        return torch.cat([angles.cos(), angles.sin()], dim=1)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * 0.5 * (1.0 + torch.tanh(0.5 * x))


class SiLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swish(x)


class SelfAttention(nn.Module):
    def __init__(self, channels: int, num_heads: int = 4):
        """Self-Attention with two spatial dimensions.

        channels: the number of channels. Should be divisible by the number of heads.
        """
        super().__init__()
        assert channels % num_heads == 0, "channels should be divisible by num_heads"
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(channels, channels * 3, bias=True)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        B, C, H, W = x.shape
        N = H * W
        x = x.flatten(2).transpose(1, 2)  # (B, N, C)
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        return x.transpose(1, 2).reshape(B, C, H, W)


ConvTranspose2d = nn.ConvTranspose2d


class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = GroupNorm(1, channels)
        self.attn = SelfAttention(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x


class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        super().__init__()
        self.norm2 = GroupNorm(groups, output_channels)
        self.conv1 = nn.Conv2d(input_channels, output_channels, 3, padding=1)
        self.act = SiLU()
        self.proj_in = (
            nn.Conv2d(input_channels, output_channels, 1) if input_channels != output_channels else nn.Identity()
        )
        self.norm1 = GroupNorm(groups, output_channels)
        self.fc_emb = nn.Linear(step_dim, output_channels)
        self.conv2 = nn.Conv2d(output_channels, output_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        shortcut = self.proj_in(x)  # computed first, added last
        x = self.act(self.norm1(self.conv1(x)))
        x = x + self.fc_emb(self.act(time_emb)).reshape(x.shape[0], -1, 1, 1)
        x = self.act(self.norm2(self.conv2(x)))
        return x + shortcut


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.attn = AttentionBlock(channels_out)
        self.block2 = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.block1 = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)
        self.pool = nn.Conv2d(channels_out, channels_out, 4, 2, 1) if downsample else nn.Identity()
        self.downsample = downsample

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.downsample:
            assert x.shape[-2] % 2 == 0, f"height {x.shape[-2]} is odd"
            assert x.shape[-1] % 2 == 0, f"width {x.shape[-1]} is odd"
        x = self.block1(x, step_emb)
        x = self.block2(x, step_emb)
        x = self.attn(x)
        return self.pool(x), x


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        super().__init__()
        self.attn = AttentionBlock(dim_in)
        self.block2 = ResidualBlock(dim_in, dim_in, time_emb_dim, groups)
        self.block1 = ResidualBlock(2 * dim_out, dim_in, time_emb_dim, groups)
        self.unpool = ConvTranspose2d(dim_in, dim_in, 4, 2, 1) if upsample else nn.Identity()

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([skip, x], dim=1)
        x = self.block1(x, step_emb)
        x = self.block2(x, step_emb)
        x = self.attn(x)
        return self.unpool(x)


class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.attn = AttentionBlock(mid_dim)
        self.block1 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        self.block2 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor):
        x = self.block1(x, step_emb)
        x = self.attn(x)
        x = self.block2(x, step_emb)
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
        embed_dim = 4 * channels
        self.patch_embed = nn.Conv2d(image_shape[0], channels, kernel_size=7, stride=1, padding=3)
        self.time_embed = nn.Sequential(
            SinusoidalPositionEmbeddings(max_steps),
            nn.Linear(max_steps, embed_dim),
            nn.GELU(),
            nn.Linear(embed_dim, embed_dim),
        )
        dims = [channels] + [mult * channels for mult in dim_mults]
        depth = len(dim_mults)
        self.down_blocks = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for i in range(depth):
            self.down_blocks.append(DownBlock(dims[i], dims[i + 1], embed_dim, groups, downsample=i < depth - 1))
            if i > 0:
                # up block for down block i, inserted so that the deepest one comes first
                self.up_blocks.insert(0, UpBlock(dims[i], dims[i + 1], embed_dim, groups, upsample=True))
        self.mid_block = MidBlock(dims[-1], embed_dim, groups)
        self.head_block = ResidualBlock(channels, channels, embed_dim, groups)
        self.head = nn.Conv2d(channels, image_shape[0], kernel_size=1)

    def forward(self, x: torch.Tensor, num_steps: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(num_steps)
        x = self.patch_embed(x)
        skips = []
        for blk in self.down_blocks:
            x, skip = blk(x, emb)
            skips.append(skip)
        x = self.mid_block(x, emb)
        for blk in self.up_blocks:
            x = blk(x, emb, skips.pop())
        return self.head(self.head_block(x, emb))
