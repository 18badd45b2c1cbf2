"""`SelfAttention` wraps `nn.MultiheadAttention` (its fused `in_proj_weight` and `out_proj`) and
reshapes with `flatten` and `transpose`; otherwise as hf_names_sdpa: `nn.SiLU` modules inside the
blocks, cosines-first embeddings from a matrix product, DownBlock raises ValueError, the skip goes
first in the concatenation."""

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
        if num_channels % num_groups != 0:
            raise ValueError("num_channels must be divisible by num_groups")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if self.affine:
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
        B, C, H, W = x.shape
        x = x.reshape(B, self.num_groups, C // self.num_groups, H, W)
        var, mean = torch.var_mean(x, dim=[2, 3, 4], correction=0, keepdim=True)
        x = ((x - mean) / torch.sqrt(var + self.eps)).reshape(B, C, H, W)
        if self.affine:
            x = x * self.weight.reshape(1, C, 1, 1) + self.bias.reshape(1, C, 1, 1)
        return x


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        i = torch.arange(0, embedding_size, 2, dtype=torch.float32)  # 2k
        self.register_buffer("inv_freq", (1.0 / (10000 ** (i / embedding_size))).unsqueeze(0))  # (1, d/2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch,) -> (batch, embedding_size): cosines, then sines"""
        phase = x.float().unsqueeze(-1) @ self.inv_freq  # (batch, 1) @ (1, d/2) -> (batch, d/2)
        return torch.cat([phase.cos(), phase.sin()], dim=-1)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class SiLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swish(x)


class SelfAttention(nn.Module):
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.attend = nn.MultiheadAttention(channels, num_heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, height, width) -> same shape; PyTorch's own multi-head attention
        over the height * width pixels."""
        batch, channels, height, width = x.shape
        pixels = x.flatten(2).transpose(1, 2)  # (batch, height * width, channels)
        out, _ = self.attend(pixels, pixels, pixels, need_weights=False)
        return out.transpose(1, 2).reshape(batch, channels, height, width)


ConvTranspose2d = nn.ConvTranspose2d


class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.group_norm = GroupNorm(num_groups=1, num_channels=channels)
        self.self_attn = SelfAttention(channels, num_heads=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        hidden_states = self.group_norm(x)
        hidden_states = self.self_attn(hidden_states)
        return hidden_states + residual


class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, output_channels, kernel_size=3, stride=1, padding=1)
        self.norm1 = nn.GroupNorm(num_groups=groups, num_channels=output_channels, eps=1e-5, affine=True)
        self.time_emb_proj = nn.Linear(step_dim, output_channels)
        self.conv2 = nn.Conv2d(output_channels, output_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = nn.GroupNorm(num_groups=groups, num_channels=output_channels, eps=1e-5, affine=True)
        self.nonlinearity = nn.SiLU()
        self.use_conv_shortcut = input_channels != output_channels
        self.conv_shortcut = nn.Conv2d(input_channels, output_channels, 1) if self.use_conv_shortcut else None

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        hidden_states = self.nonlinearity(self.norm1(self.conv1(x)))
        temb = self.time_emb_proj(self.nonlinearity(time_emb))[:, :, None, None]
        hidden_states = hidden_states + temb
        hidden_states = self.nonlinearity(self.norm2(self.conv2(hidden_states)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + hidden_states


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            [
                ResidualBlock(channels_in, channels_out, time_emb_dim, groups),
                ResidualBlock(channels_out, channels_out, time_emb_dim, groups),
            ]
        )
        self.attentions = nn.ModuleList([AttentionBlock(channels_out)])
        self.downsampler = nn.Conv2d(channels_out, channels_out, 4, stride=2, padding=1) if downsample else None

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.downsampler is not None and (x.shape[2] % 2 == 1 or x.shape[3] % 2 == 1):
            raise ValueError("DownBlock: height and width must be even to downsample")
        for resnet in self.resnets:
            x = resnet(x, step_emb)
        for attention in self.attentions:
            x = attention(x)
        output_states = x
        if self.downsampler is not None:
            x = self.downsampler(x)
        return x, output_states


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            [
                ResidualBlock(dim_out + dim_out, dim_in, time_emb_dim, groups),
                ResidualBlock(dim_in, dim_in, time_emb_dim, groups),
            ]
        )
        self.attentions = nn.ModuleList([AttentionBlock(dim_in)])
        self.upsampler = nn.ConvTranspose2d(dim_in, dim_in, 4, stride=2, padding=1) if upsample else None

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        hidden_states = torch.cat([skip, x], dim=1)
        for resnet in self.resnets:
            hidden_states = resnet(hidden_states, step_emb)
        for attention in self.attentions:
            hidden_states = attention(hidden_states)
        if self.upsampler is not None:
            hidden_states = self.upsampler(hidden_states)
        return hidden_states


class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups), ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)]
        )
        self.attentions = nn.ModuleList([AttentionBlock(mid_dim)])

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor):
        hidden_states = self.resnets[0](x, step_emb)
        for attn, resnet in zip(self.attentions, self.resnets[1:]):
            hidden_states = attn(hidden_states)
            hidden_states = resnet(hidden_states, step_emb)
        return hidden_states


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
        time_embed_dim = channels * 4
        self.time_proj = SinusoidalPositionEmbeddings(max_steps)
        self.time_embedding = nn.Sequential(
            nn.Linear(max_steps, time_embed_dim), nn.GELU(), nn.Linear(time_embed_dim, time_embed_dim)
        )
        self.conv_in = nn.Conv2d(image_shape[0], channels, kernel_size=7, padding=3)
        block_out_channels = [channels * m for m in dim_mults]
        self.down_blocks = nn.ModuleList([])
        output_channel = channels
        for i, block_out in enumerate(block_out_channels):
            input_channel, output_channel = output_channel, block_out
            is_final_block = i == len(block_out_channels) - 1
            self.down_blocks.append(DownBlock(input_channel, output_channel, time_embed_dim, groups, not is_final_block))
        self.mid_block = MidBlock(block_out_channels[-1], time_embed_dim, groups)
        self.up_blocks = nn.ModuleList([])
        ins = [channels] + block_out_channels[:-1]
        for i in reversed(range(1, len(block_out_channels))):
            self.up_blocks.append(UpBlock(ins[i], block_out_channels[i], time_embed_dim, groups, True))
        self.out_resnet = ResidualBlock(channels, channels, time_embed_dim, groups)
        self.conv_out = nn.Conv2d(channels, image_shape[0], kernel_size=1)

    def forward(self, x: torch.Tensor, num_steps: torch.Tensor) -> torch.Tensor:
        emb = self.time_embedding(self.time_proj(num_steps))
        sample = self.conv_in(x)
        down_block_res_samples = ()
        for down_block in self.down_blocks:
            sample, res_sample = down_block(sample, emb)
            down_block_res_samples += (res_sample,)
        sample = self.mid_block(sample, emb)
        for up_block in self.up_blocks:
            res_sample = down_block_res_samples[-1]
            down_block_res_samples = down_block_res_samples[:-1]
            sample = up_block(sample, emb, res_sample)
        sample = self.out_resnet(sample, emb)
        return self.conv_out(sample)
