"""Blocks with ModuleLists, functional layers, inlined attention, layers created out of order; Unets
that read `.device` off a parameter, keep skips in a deque, or hold their parts in a ModuleDict.

`STYLES[name] = {class or function name: replacement source}` (see the package's docstring)."""

STYLES: dict[str, dict[str, str]] = {
    'w01_swish_variants': {
        'swish': '''
def swish(x: t.Tensor) -> t.Tensor:
    return 0.5 * x * (1 + torch.tanh(0.5 * x))
''',
        'SiLU': '''
class SiLU(nn.Module):
    def forward(self, x: t.Tensor) -> t.Tensor:
        return torch.where(x >= 0, x / (1 + torch.exp(-x.clamp(min=0))), x * torch.exp(x.clamp(max=0)) / (1 + torch.exp(x.clamp(max=0))))
''',
    },
    'b01_sequential_nn_groupnorm': {
        'AttentionBlock': '''
class AttentionBlock(nn.Module):
    """nn.GroupNorm(1, C) and SelfAttention inside an nn.Sequential."""
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(1, channels), SelfAttention(channels))

    def forward(self, x):
        return self.body(x) + x
''',
    },
    'b02_subclass_of_selfattention': {
        'AttentionBlock': '''
class AttentionBlock(SelfAttention):
    """An AttentionBlock IS a SelfAttention (4 heads) with a norm and a residual around it."""
    def __init__(self, channels: int):
        super().__init__(channels, num_heads=4)
        self.norm = GroupNorm(1, channels)

    def forward(self, x):
        return x + super().forward(self.norm(x))
''',
    },
    'b03_inlined_attention': {
        'AttentionBlock': '''
class AttentionBlock(nn.Module):
    """Does not use the SelfAttention class: norm and attention inlined with its own Linear layers."""
    def __init__(self, channels: int):
        super().__init__()
        self.norm = GroupNorm(1, channels)
        self.q, self.k, self.v, self.o = (nn.Linear(channels, channels) for _ in range(4))

    def forward(self, x):
        h = x.shape[2]
        s = rearrange(self.norm(x), "b c h w -> b (h w) c")
        q, k, v = (rearrange(p(s), "b s (n e) -> b n s e", n=4) for p in (self.q, self.k, self.v))
        o = rearrange(F.scaled_dot_product_attention(q, k, v), "b n s e -> b s (n e)")
        return x + rearrange(self.o(o), "b (h w) c -> b c h w", h=h)
''',
    },
    'b04_nn_multiheadattention_block': {
        'AttentionBlock': '''
class AttentionBlock(nn.Module):
    """Uses nn.MultiheadAttention(C, 4) directly instead of the lesson's SelfAttention."""
    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.mha = nn.MultiheadAttention(channels, 4, batch_first=True)

    def forward(self, x):
        b, c, h, w = x.shape
        s = rearrange(self.norm(x), "b c h w -> b (h w) c")
        out, _ = self.mha(s, s, s, need_weights=False)
        return x + rearrange(out, "b (h w) c -> b c h w", h=h)
''',
    },
    'b05_attention_called_via_kwarg_with_bare_params': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """ARENA-transformer style bare parameters: W_Q/W_K/W_V (n, c, e), b_Q... (n, e), W_O (n, e, c), b_O (c)."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        e = channels // num_heads
        self.num_heads = num_heads
        self.W_Q = nn.Parameter(torch.randn(num_heads, channels, e) / channels ** 0.5)
        self.W_K = nn.Parameter(torch.randn(num_heads, channels, e) / channels ** 0.5)
        self.W_V = nn.Parameter(torch.randn(num_heads, channels, e) / channels ** 0.5)
        self.b_Q = nn.Parameter(torch.zeros(num_heads, e))
        self.b_K = nn.Parameter(torch.zeros(num_heads, e))
        self.b_V = nn.Parameter(torch.zeros(num_heads, e))
        self.W_O = nn.Parameter(torch.randn(num_heads, e, channels) / channels ** 0.5)
        self.b_O = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        h = x.shape[2]
        s = rearrange(x, "b c h w -> b (h w) c")
        q = einsum("b s c, n c e -> b s n e", s, self.W_Q) + self.b_Q
        k = einsum("b s c, n c e -> b s n e", s, self.W_K) + self.b_K
        v = einsum("b s c, n c e -> b s n e", s, self.W_V) + self.b_V
        scores = einsum("b q n e, b k n e -> b n q k", q, k) / (q.shape[-1] ** 0.5)
        z = einsum("b n q k, b k n e -> b q n e", scores.softmax(-1), v)
        out = einsum("b q n e, n e c -> b q c", z, self.W_O) + self.b_O
        return rearrange(out, "b (h w) c -> b c h w", h=h)
''',
        'AttentionBlock': '''
class AttentionBlock(nn.Module):
    """Calls its SelfAttention with a keyword argument (x=...)."""
    def __init__(self, channels: int):
        super().__init__()
        self.norm = GroupNorm(1, channels)
        self.attn = SelfAttention(channels, num_heads=4)

    def forward(self, x):
        return x + self.attn(x=self.norm(x))
''',
    },
    'r01_seq_silu_linear_lambda_list': {
        'ResidualBlock': '''
class ResidualBlock(nn.Module):
    """Step projection nn.Sequential(nn.SiLU(), nn.Linear); convs created in a ModuleList; both norms
    nn.GroupNorm; shortcut a conditional in forward; embedding added with [:, :, None, None]."""
    def __init__(self, input_channels, output_channels, step_dim, groups):
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv2d(input_channels, output_channels, 3, padding=1),
            nn.Conv2d(output_channels, output_channels, 3, padding=1),
        ])
        self.norms = nn.ModuleList([nn.GroupNorm(groups, output_channels) for _ in range(2)])
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(step_dim, output_channels))
        self.same = input_channels == output_channels
        if not self.same:
            self.skip = nn.Conv2d(input_channels, output_channels, 1)

    def forward(self, x, time_emb):
        h = F.silu(self.norms[0](self.convs[0](x)))
        h = h + self.emb(time_emb)[:, :, None, None]
        h = F.silu(self.norms[1](self.convs[1](h)))
        return h + (x if self.same else self.skip(x))
''',
    },
    'r02_shortcut_first_conv2_created_first': {
        'ResidualBlock': '''
class ResidualBlock(nn.Module):
    """Creates layers in reverse order, computes the shortcut and the step projection first,
    F.silu then Linear, .view for broadcasting, shortcut as a lambda."""
    def __init__(self, input_channels, output_channels, step_dim, groups):
        super().__init__()
        if input_channels != output_channels:
            self.res_conv = nn.Conv2d(input_channels, output_channels, kernel_size=1)
            self.shortcut = lambda x: self.res_conv(x)
        else:
            self.shortcut = lambda x: x
        self.step_proj = nn.Linear(step_dim, output_channels)
        self.gn2 = GroupNorm(groups, output_channels)
        self.conv2 = nn.Conv2d(output_channels, output_channels, 3, 1, 1)
        self.gn1 = GroupNorm(groups, output_channels)
        self.conv1 = nn.Conv2d(input_channels, output_channels, 3, 1, 1)
        self.act = nn.SiLU()

    def forward(self, x, time_emb):
        skip = self.shortcut(x)
        step = self.step_proj(F.silu(time_emb)).view(x.shape[0], -1, 1, 1)
        h = self.act(self.gn1(self.conv1(x))) + step
        return self.act(self.gn2(self.conv2(h))) + skip
''',
    },
    'r03_functional_convs_unsqueeze': {
        'ResidualBlock': '''
class ResidualBlock(nn.Module):
    """Convs applied with F.conv2d on the layers' weights, unsqueeze for broadcasting, SiLU module,
    shortcut None when not needed."""
    def __init__(self, input_channels, output_channels, step_dim, groups):
        super().__init__()
        self.c1 = nn.Conv2d(input_channels, output_channels, 3, padding=1)
        self.c2 = nn.Conv2d(output_channels, output_channels, 3, padding=1)
        self.n1, self.n2 = GroupNorm(groups, output_channels), GroupNorm(groups, output_channels)
        self.t = nn.Linear(step_dim, output_channels)
        self.silu = SiLU()
        self.sc = nn.Conv2d(input_channels, output_channels, 1) if input_channels != output_channels else None

    def forward(self, x, time_emb):
        h = self.silu(self.n1(F.conv2d(x, self.c1.weight, self.c1.bias, padding=1)))
        h = h + self.t(self.silu(time_emb)).unsqueeze(-1).unsqueeze(-1)
        h = self.silu(self.n2(F.conv2d(h, self.c2.weight, self.c2.bias, padding=1)))
        return h + (x if self.sc is None else self.sc(x))
''',
    },
    'r04_sequential_rounds_padding_same': {
        'ResidualBlock': '''
class ResidualBlock(nn.Module):
    """Each round is an nn.Sequential(conv, norm, SiLU); padding='same'; nn.Identity shortcut."""
    def __init__(self, input_channels, output_channels, step_dim, groups):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(input_channels, output_channels, 3, padding="same"),
                                    nn.GroupNorm(groups, output_channels), nn.SiLU())
        self.block2 = nn.Sequential(nn.Conv2d(output_channels, output_channels, 3, padding="same"),
                                    GroupNorm(groups, output_channels), SiLU())
        self.mlp = nn.Sequential(SiLU(), nn.Linear(step_dim, output_channels))
        self.res = nn.Conv2d(input_channels, output_channels, 1) if input_channels != output_channels else nn.Identity()

    def forward(self, x, time_emb):
        h = self.block1(x)
        h = h + rearrange(self.mlp(time_emb), "b c -> b c () ()")
        return self.block2(h) + self.res(x)
''',
    },
    'd01_modulelist_functional_down': {
        'DownBlock': '''
class DownBlock(nn.Module):
    """Residual blocks in a ModuleList; downsampling with F.conv2d on a Conv2d's weight; no assert."""
    def __init__(self, channels_in, channels_out, time_emb_dim, groups, downsample):
        super().__init__()
        self.downsample = downsample
        self.resblocks = nn.ModuleList([ResidualBlock(channels_in, channels_out, time_emb_dim, groups),
                                        ResidualBlock(channels_out, channels_out, time_emb_dim, groups)])
        self.attn = AttentionBlock(channels_out)
        if downsample:
            self.downconv = nn.Conv2d(channels_out, channels_out, 4, 2, 1)

    def forward(self, x, step_emb):
        for block in self.resblocks:
            x = block(x, step_emb)
        skip = self.attn(x)
        if not self.downsample:
            return skip, skip
        return F.conv2d(skip, self.downconv.weight, self.downconv.bias, stride=2, padding=1), skip
''',
    },
    'u01_concat_skip_first_functional_up': {
        'UpBlock': '''
class UpBlock(nn.Module):
    """torch.concat with the skip first; F.conv_transpose2d with the layer's weight; ModuleDict."""
    def __init__(self, dim_in, dim_out, time_emb_dim, groups, upsample):
        super().__init__()
        self.layers = nn.ModuleDict({
            "res1": ResidualBlock(2 * dim_out, dim_in, time_emb_dim, groups),
            "res2": ResidualBlock(dim_in, dim_in, time_emb_dim, groups),
            "attn": AttentionBlock(dim_in),
        })
        self.upsample = upsample
        if upsample:
            self.upconv = ConvTranspose2d(dim_in, dim_in, 4, 2, 1)

    def forward(self, x, step_emb, skip):
        h = torch.concat((skip, x), dim=1)
        h = self.layers["res1"](h, step_emb)
        h = self.layers["res2"](h, step_emb)
        h = self.layers["attn"](h)
        return F.conv_transpose2d(h, self.upconv.weight, self.upconv.bias, stride=2, padding=1) if self.upsample else h
''',
    },
    'm01_modulelist_isinstance': {
        'MidBlock': '''
class MidBlock(nn.Module):
    """One ModuleList, dispatching on isinstance."""
    def __init__(self, mid_dim, time_emb_dim, groups):
        super().__init__()
        self.seq = nn.ModuleList([ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups), AttentionBlock(mid_dim),
                                  ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)])

    def forward(self, x, step_emb):
        for layer in self.seq:
            x = layer(x, step_emb) if isinstance(layer, ResidualBlock) else layer(x)
        return x
''',
    },
    'm02_midblock_inlines_attention_block': {
        'MidBlock': '''
class MidBlock(nn.Module):
    """The attention block written out in the mid block: GroupNorm(1) + SelfAttention + residual."""
    def __init__(self, mid_dim, time_emb_dim, groups):
        super().__init__()
        self.res1 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)
        self.attn_norm = GroupNorm(1, mid_dim)
        self.attn = SelfAttention(mid_dim, num_heads=4)
        self.res2 = ResidualBlock(mid_dim, mid_dim, time_emb_dim, groups)

    def forward(self, x, step_emb):
        h = self.res1(x, step_emb)
        h = h + self.attn(self.attn_norm(h))
        return self.res2(h, step_emb)
''',
    },
    'd02_downblock_inlines_attention_nn_groupnorm': {
        'DownBlock': '''
class DownBlock(nn.Module):
    """The attention block written out in the down block, with nn.GroupNorm(1, C)."""
    def __init__(self, channels_in, channels_out, time_emb_dim, groups, downsample):
        super().__init__()
        self.r1 = ResidualBlock(channels_in, channels_out, time_emb_dim, groups)
        self.r2 = ResidualBlock(channels_out, channels_out, time_emb_dim, groups)
        self.norm = nn.GroupNorm(1, channels_out)
        self.attn = SelfAttention(channels_out)
        self.down = nn.Conv2d(channels_out, channels_out, 4, 2, 1) if downsample else nn.Identity()

    def forward(self, x, step_emb):
        assert x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0 or isinstance(self.down, nn.Identity)
        h = self.r2(self.r1(x, step_emb), step_emb)
        h = h + self.attn(self.norm(h))
        return self.down(h), h
''',
    },
    'r05_swish_function_and_asserts': {
        'ResidualBlock': '''
class ResidualBlock(nn.Module):
    """Calls the swish function directly; asserts shapes against the layers' weights."""
    def __init__(self, input_channels, output_channels, step_dim, groups):
        super().__init__()
        self.conv_a = nn.Conv2d(input_channels, output_channels, 3, padding=1)
        self.norm_a = GroupNorm(groups, output_channels)
        self.conv_b = nn.Conv2d(output_channels, output_channels, 3, padding=1)
        self.norm_b = GroupNorm(groups, output_channels)
        self.time = nn.Linear(step_dim, output_channels)
        self.skip = nn.Conv2d(input_channels, output_channels, 1) if input_channels != output_channels else nn.Identity()

    def forward(self, x, time_emb):
        assert x.shape[1] == self.conv_a.weight.shape[1], "wrong number of input channels"
        assert time_emb.shape[1] == self.time.weight.shape[1], "wrong step embedding size"
        h = swish(self.norm_a(self.conv_a(x)))
        h = h + self.time(swish(time_emb))[..., None, None]
        h = swish(self.norm_b(self.conv_b(h)))
        return h + self.skip(x)
''',
    },
    'r06_unflatten_rearrange_layers': {
        'ResidualBlock': '''
class ResidualBlock(nn.Module):
    """Step projection nn.Sequential(SiLU, Linear, nn.Unflatten); rounds as Sequentials with an einops
    Rearrange-free layout; shortcut via a conditional; act shared."""
    def __init__(self, input_channels, output_channels, step_dim, groups):
        super().__init__()
        self.step = nn.Sequential(nn.SiLU(), nn.Linear(step_dim, output_channels), nn.Unflatten(1, (output_channels, 1, 1)))
        self.round1 = nn.Sequential(nn.Conv2d(input_channels, output_channels, 3, padding=1), GroupNorm(groups, output_channels), nn.SiLU())
        self.round2 = nn.Sequential(nn.Conv2d(output_channels, output_channels, 3, padding=1), nn.GroupNorm(groups, output_channels), nn.SiLU())
        self.proj = None if input_channels == output_channels else nn.Conv2d(input_channels, output_channels, 1)

    def forward(self, x, time_emb):
        h = self.round2(torch.add(self.round1(x), self.step(time_emb)))
        return h + (self.proj(x) if self.proj is not None else x)
''',
    },
    'r08_inplace_silu_and_adds': {
        'ResidualBlock': '''
class ResidualBlock(nn.Module):
    """nn.SiLU(inplace=True) and in-place additions on intermediates (never on the inputs)."""
    def __init__(self, input_channels, output_channels, step_dim, groups):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, output_channels, 3, padding=1)
        self.norm1 = GroupNorm(groups, output_channels)
        self.conv2 = nn.Conv2d(output_channels, output_channels, 3, padding=1)
        self.norm2 = GroupNorm(groups, output_channels)
        self.act = nn.SiLU(inplace=True)
        self.lin = nn.Linear(step_dim, output_channels)
        self.shortcut = nn.Conv2d(input_channels, output_channels, 1) if input_channels != output_channels else nn.Identity()

    def forward(self, x, time_emb):
        h = self.act(self.norm1(self.conv1(x)))
        h += self.lin(F.silu(time_emb))[:, :, None, None]
        h = self.act(self.norm2(self.conv2(h)))
        h += self.shortcut(x)
        return h
''',
    },
}
