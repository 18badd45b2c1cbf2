"""SelfAttention with bare `nn.Parameter` weights per head (W_Q, W_K, W_V of shape
(heads, channels, head_size), W_O of shape (heads, head_size, channels), biases per head), as the
transformer exercises build attention, with fancy_einsum; the blocks as official_fused_linear."""

from typing import Optional, Union

import torch as t
from einops import rearrange
from fancy_einsum import einsum
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
        assert num_channels % num_groups == 0
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if self.affine:
            self.weight = nn.Parameter(t.empty((num_channels,), device=device, dtype=dtype))
            self.bias = nn.Parameter(t.empty((num_channels,), device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialize the weight and bias, if applicable."""
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: t.Tensor) -> t.Tensor:
        """Apply normalization to each group of channels.

        x: shape (batch, channels, height, width)
        out: shape (batch, channels, height, width)
        """
        x = rearrange(x, "n (g c) h w -> n g c h w", g=self.num_groups)
        dim = (2, 3, 4)
        mean = x.mean(dim=dim, keepdim=True)
        var = x.var(dim=dim, keepdim=True, unbiased=False)
        x = (x - mean) / ((var + self.eps) ** 0.5)
        x = rearrange(x, "n g c h w -> n (g c) h w")
        if self.affine:
            x = x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return x


class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        self.embedding_size = embedding_size
        wk = 1.0 / 10000.0 ** ((t.arange(0, embedding_size, 2)) / embedding_size)
        self.register_buffer("wk", wk)

    def forward(self, x: t.Tensor) -> t.Tensor:
        """
        x: shape (batch, ) - for each batch element, the number of noise steps
        Out: shape (batch, embedding_size)
        """
        wkx = t.einsum("x, k -> xk", x.to(self.wk.dtype), self.wk)
        stacked = t.stack((wkx.sin(), wkx.cos()), dim=-1)
        return rearrange(stacked, "batch k func -> batch (k func)")


def swish(x: t.Tensor) -> t.Tensor:
    return x * x.sigmoid()


class SiLU(nn.Module):
    def forward(self, x: t.Tensor) -> t.Tensor:
        return swish(x)


class SelfAttention(nn.Module):
    def __init__(self, channels: int, num_heads: int = 4):
        """Weights as bare parameters, one slice per head, the way the transformer exercises keep them:
        W_Q, W_K, W_V: (heads, channels, head_size); W_O: (heads, head_size, channels)."""
        super().__init__()
        head_size = channels // num_heads
        self.head_size = head_size

        def weight(*shape: int) -> nn.Parameter:
            return nn.Parameter(t.randn(*shape) / shape[-2] ** 0.5)

        self.W_Q, self.W_K, self.W_V = (weight(num_heads, channels, head_size) for _ in range(3))
        self.b_Q, self.b_K, self.b_V = (nn.Parameter(t.zeros(num_heads, head_size)) for _ in range(3))
        self.W_O = weight(num_heads, head_size, channels)
        self.b_O = nn.Parameter(t.zeros(channels))

    def forward(self, x: t.Tensor) -> t.Tensor:
        """x: (batch, channels, height, width) -> same shape."""
        height = x.shape[2]
        pixels = rearrange(x, "b c h w -> b (h w) c")
        q = einsum("b s c, n c e -> b s n e", pixels, self.W_Q) + self.b_Q
        k = einsum("b s c, n c e -> b s n e", pixels, self.W_K) + self.b_K
        v = einsum("b s c, n c e -> b s n e", pixels, self.W_V) + self.b_V
        scores = einsum("b q n e, b k n e -> b n q k", q, k) / self.head_size**0.5
        mixed = einsum("b n q k, b k n e -> b q n e", scores.softmax(dim=-1), v)
        out = einsum("b q n e, n e c -> b q c", mixed, self.W_O) + self.b_O
        return rearrange(out, "b (h w) c -> b c h w", h=height)


ConvTranspose2d = nn.ConvTranspose2d


class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.groupnorm = GroupNorm(1, channels)
        self.attn = SelfAttention(channels, num_heads=4)

    def forward(self, x: t.Tensor) -> t.Tensor:
        return x + self.attn(self.groupnorm(x))


class ResidualBlock(nn.Module):
    def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):
        """
        input_channels: number of channels in the input to foward
        output_channels: number of channels in the returned output
        step_dim: embedding dimension size for the number of steps
        groups: number of groups in the GroupNorms

        Note that the conv in the left branch is needed if c_in != c_out.
        """
        super().__init__()
        self.mlp = nn.Sequential(SiLU(), nn.Linear(step_dim, output_channels))
        self.block1 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 3, padding=1),
            GroupNorm(groups, output_channels),
            SiLU(),
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(output_channels, output_channels, 3, padding=1),
            GroupNorm(groups, output_channels),
            SiLU(),
        )
        self.res_conv = (
            nn.Conv2d(input_channels, output_channels, 1) if input_channels != output_channels else nn.Identity()
        )

    def forward(self, x: t.Tensor, time_emb: t.Tensor) -> t.Tensor:
        """
        Note that the output of the (silu, linear) block should be of shape (batch, c_out). Since we would like to add this to the output of the first (conv, norm, silu) block, which will have a different shape, we need to first add extra dimensions to the output of the (silu, linear) block.
        """
        h = self.block1(x)
        time_emb = self.mlp(time_emb)
        h = rearrange(time_emb, "b c -> b c 1 1") + h
        h = self.block2(h)
        return h + self.res_conv(x)


class DownBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):
        super().__init__()
        self.block0 = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)
        self.block1 = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.attn = AttentionBlock(channels_out)
        self.downsample = nn.Conv2d(channels_out, channels_out, 4, 2, 1) if downsample else nn.Identity()

    def forward(self, x: t.Tensor, step_emb: t.Tensor) -> tuple[t.Tensor, t.Tensor]:
        """
        x: shape (batch, channels, height, width)
        step_emb: shape (batch, emb)
        Return: (downsampled output, full size output to skip to matching UpBlock)
        """
        B, C, H, W = x.shape
        if isinstance(self.downsample, nn.Conv2d):
            assert H % 2 == 0, f"{H} not divisible by 2"
            assert W % 2 == 0, f"{W} not divisible by 2"
        x = self.block0(x, step_emb)
        x = self.block1(x, step_emb)
        skip = self.attn(x)
        x = self.downsample(skip)
        return x, skip


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):
        """
        IMPORTANT: arguments are with respect to the matching DownBlock.

        """
        super().__init__()
        self.block0 = ResidualBlock(dim_out * 2, dim_in, time_emb_dim, groups)
        self.block1 = ResidualBlock(dim_in, dim_in, time_emb_dim, groups)
        self.attn = AttentionBlock(dim_in)
        self.upsample = ConvTranspose2d(dim_in, dim_in, 4, 2, 1) if upsample else nn.Identity()

    def forward(self, x: t.Tensor, step_emb: t.Tensor, skip: t.Tensor) -> t.Tensor:
        x = t.cat((x, skip), dim=1)
        x = self.block0(x, step_emb)
        x = self.block1(x, step_emb)
        x = self.attn(x)
        return self.upsample(x)


class MidBlock(nn.Module):
    def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.mid_block1 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        self.mid_attn = AttentionBlock(mid_dim)
        self.mid_block2 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)

    def forward(self, x: t.Tensor, step_emb: t.Tensor):
        x = self.mid_block1(x, step_emb)
        x = self.mid_attn(x)
        x = self.mid_block2(x, step_emb)
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
        """
        image_shape: the input and output image shape, a tuple of (C, H, W)
        channels: the number of channels after the first convolution.
        dim_mults: the number of output channels for downblock i is dim_mults[i] * channels. Note that the default arg of (1, 2, 4, 8) will contain one more DownBlock and UpBlock than the DDPM image above.
        groups: number of groups in the group normalization of each ResnetBlock (doesn't apply to attention block)
        max_steps: the max number of (de)noising steps. We also use this value as the sinusoidal positional embedding dimension (although in general these do not need to be related).
        """
        super().__init__()
        self.noise_schedule = None
        self.img_shape = image_shape
        img_channels = image_shape[0]
        time_dim = channels * 4
        self.time_mlp = nn.Sequential(
            SinusoidalPositionEmbeddings(max_steps),
            nn.Linear(max_steps, time_dim),
            nn.GELU(),
            nn.Linear(time_dim, time_dim),
        )
        self.init_conv = nn.Conv2d(img_channels, channels, 7, padding=3)
        dims = [channels, *map(lambda m: channels * m, dim_mults)]
        in_out = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList([])
        self.ups = nn.ModuleList([])
        num_resolutions = len(in_out)
        for ind, (dim_in, dim_out) in enumerate(in_out):
            is_last = ind >= (num_resolutions - 1)
            self.downs.append(DownBlock(dim_in, dim_out, time_dim, groups, not is_last))
        mid_dim = dims[-1]
        self.mid = MidBlock(mid_dim, time_dim, groups)
        for ind, (dim_in, dim_out) in enumerate(reversed(in_out[1:])):
            self.ups.append(UpBlock(dim_in, dim_out, time_dim, groups, True))
        self.final_block = ResidualBlock(channels, channels, time_dim, groups)
        self.final_conv = nn.Conv2d(channels, img_channels, 1)

    def forward(self, x: t.Tensor, num_steps: t.Tensor) -> t.Tensor:
        """
        x: shape (batch, channels, height, width)
        num_steps: shape (batch, )

        out: shape (batch, channels, height, width)
        """
        x = self.init_conv(x)
        time = self.time_mlp(num_steps)
        h = []
        for downblock in self.downs:
            x, skip = downblock(x, time)
            h.append(skip)
        x = self.mid(x, time)
        for upblock in self.ups:
            x = upblock(x, time, h.pop())
        x = self.final_block(x, time)
        return self.final_conv(x)
