"""A fused `nn.Linear(C, 3C)` split with einops `(three n e)` into heads folded into the batch, scores
with `torch.baddbmm` and values with `torch.bmm`; the residual block's two rounds come from a helper
function at module level; the skip is concatenated before the input; DownBlock asserts with a
message; the Unet indexes the skips from the end."""

from typing import Optional, Union

import torch
from einops import rearrange
from torch import nn

from w3d4_part1_diffusion_training_solution import DiffusionModel


def conv_norm_act(c_in: int, c_out: int, groups: int) -> nn.Sequential:
    """One round of the residual block's main branch: 3x3 conv, group norm, SiLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), GroupNorm(groups, c_out), SiLU())


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
        self.eps = eps
        self.affine = affine
        self.weight = nn.Parameter(torch.empty(num_channels, device=device, dtype=dtype)) if affine else None
        self.bias = nn.Parameter(torch.empty(num_channels, device=device, dtype=dtype)) if affine else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialize the weight and bias, if applicable."""
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, height, width) -> same shape"""
        grouped = rearrange(x, "b (g c) h w -> b g (c h w)", g=self.num_groups)
        mean = grouped.mean(-1, keepdim=True)
        var = grouped.var(-1, unbiased=False, keepdim=True)
        out = (grouped - mean) / torch.sqrt(var + self.eps)
        out = rearrange(out, "b g (c h w) -> b (g c) h w", h=x.shape[2], w=x.shape[3])
        if self.affine:
            out = out * self.weight.reshape(-1, 1, 1) + self.bias.reshape(-1, 1, 1)
        return out


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        self.embedding_size = embedding_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch,) -> (batch, embedding_size): sines then cosines"""
        d = self.embedding_size
        k = torch.arange(d // 2, device=x.device, dtype=torch.float32)
        w = 1.0 / torch.pow(torch.tensor(10000.0, device=x.device), 2 * k / d)
        angles = x.to(torch.float32).reshape(-1, 1) * w
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


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
        assert channels % num_heads == 0, f"{channels} channels cannot be split into {num_heads} heads"
        self.num_heads = num_heads
        self.scale = (channels // num_heads) ** -0.5
        self.qkv = nn.Linear(channels, 3 * channels)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        b, _, h, w = x.shape
        tokens = rearrange(x, "b c h w -> b (h w) c")
        # (3, batch * heads, seq, head_size): queries are the first C outputs, keys the next C, ...
        q, k, v = rearrange(self.qkv(tokens), "b s (three n e) -> three (b n) s e", three=3, n=self.num_heads)
        scores = torch.baddbmm(
            torch.empty(q.shape[0], q.shape[1], k.shape[1], dtype=q.dtype, device=q.device),
            q,
            k.transpose(1, 2),
            beta=0,
            alpha=self.scale,
        )
        out = torch.bmm(scores.softmax(dim=-1), v)  # (b n, seq, e)
        out = rearrange(out, "(b n) s e -> b s (n e)", b=b)
        return rearrange(self.to_out(out), "b (h w) c -> b c h w", h=h, w=w)


ConvTranspose2d = nn.ConvTranspose2d


class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block = nn.Sequential(GroupNorm(1, channels), SelfAttention(channels, num_heads=4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        super().__init__()
        self.round1 = conv_norm_act(input_channels, output_channels, groups)
        self.step = nn.Sequential(SiLU(), nn.Linear(step_dim, output_channels))
        self.round2 = conv_norm_act(output_channels, output_channels, groups)
        self.res_conv = (
            nn.Conv2d(input_channels, output_channels, 1) if input_channels != output_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        h = self.round1(x) + rearrange(self.step(time_emb), "b c -> b c 1 1")
        return self.round2(h) + self.res_conv(x)


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.do_downsample = downsample
        self.res1 = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)
        self.res2 = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.attn = AttentionBlock(channels_out)
        self.down = nn.Conv2d(channels_out, channels_out, 4, 2, 1) if downsample else nn.Identity()

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = x.shape[-2:]
        assert not self.do_downsample or (height % 2 == 0 and width % 2 == 0), (
            f"cannot downsample a {height}x{width} image: height and width must be even"
        )
        skip = self.attn(self.res2(self.res1(x, step_emb), step_emb))
        return self.down(skip), skip


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        super().__init__()
        self.res1 = ResidualBlock(dim_out * 2, dim_in, time_emb_dim, groups)
        self.res2 = ResidualBlock(dim_in, dim_in, time_emb_dim, groups)
        self.attn = AttentionBlock(dim_in)
        self.up = ConvTranspose2d(dim_in, dim_in, 4, 2, 1) if upsample else nn.Identity()

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        h = torch.cat((skip, x), dim=1)  # the diagram does not fix the order of the two
        return self.up(self.attn(self.res2(self.res1(h, step_emb), step_emb)))


class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.res1 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        self.attn = AttentionBlock(mid_dim)
        self.res2 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor):
        h = self.res1(x, step_emb)
        h = self.attn(h)
        h = self.res2(h, step_emb)
        return h


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
        self.time_mlp = nn.Sequential(
            SinusoidalPositionEmbeddings(max_steps),
            nn.Linear(max_steps, emb),
            nn.GELU(),
            nn.Linear(emb, emb),
        )
        self.init_conv = nn.Conv2d(image_shape[0], channels, 7, 1, 3)
        dims = [channels] + [channels * m for m in dim_mults]
        n = len(dim_mults)
        self.downs = nn.ModuleList()
        for i in range(n):
            self.downs.append(DownBlock(dims[i], dims[i + 1], emb, groups, downsample=i < n - 1))
        self.mid = MidBlock(dims[n], emb, groups)
        self.ups = nn.ModuleList()
        for i in range(n - 1, 0, -1):
            self.ups.append(UpBlock(dims[i], dims[i + 1], emb, groups, upsample=True))
        self.out_res = ResidualBlock(channels, channels, emb, groups)
        self.out_conv = nn.Conv2d(channels, image_shape[0], 1)

    def forward(self, x: torch.Tensor, num_steps: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(num_steps)
        h = self.init_conv(x)
        skips = []
        for down in self.downs:
            h, skip = down(h, emb)
            skips.append(skip)
        h = self.mid(h, emb)
        for i, up in enumerate(self.ups):
            h = up(h, emb, skips[-1 - i])
        return self.out_conv(self.out_res(h, emb))
