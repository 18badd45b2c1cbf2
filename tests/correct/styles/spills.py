"""Wrong answers to one exercise that must cost that exercise only: the composite blocks built on
them still pass."""

SPILLS: dict[str, dict[str, str]] = {
    'x02_groupnorm_unbiased_var': {
        'GroupNorm': '''
class GroupNorm(nn.Module):
    """num_groups stored as self.G, eps as self.epsilon; var(unbiased=True); addcmul."""
    def __init__(self, num_groups, num_channels, eps=1e-05, affine=True, device=None, dtype=None):
        super().__init__()
        self.num_groups = self.G = num_groups; self.epsilon = eps
        if affine:
            self.weight = nn.Parameter(torch.empty(num_channels, device=device, dtype=dtype))
            self.bias = nn.Parameter(torch.empty(num_channels, device=device, dtype=dtype))
            nn.init.ones_(self.weight); nn.init.zeros_(self.bias)
        else:
            self.register_parameter("weight", None); self.register_parameter("bias", None)

    def forward(self, x):
        b = x.shape[0]
        g = x.view(b, self.G, -1)
        mean = g.mean(-1, keepdim=True)
        var = g.var(-1, unbiased=True, keepdim=True)
        y = ((g - mean) / torch.sqrt(var + self.epsilon)).view_as(x)
        if self.weight is None:
            return y
        return torch.addcmul(self.bias.view(1, -1, 1, 1), y, self.weight.view(1, -1, 1, 1))
''',
    },
    'x03_selfattention_no_scale': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """Fused Linear(C, 3C) chunked as k, q, v (any order is a correct reading); bias only on the
    output projection."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.out = nn.Linear(channels, channels)

    def forward(self, x):
        b, c, h, w = x.shape
        s = rearrange(x, "b c h w -> b (h w) c")
        k, q, v = (rearrange(y, "b s (n e) -> b n s e", n=self.num_heads) for y in self.qkv(s).chunk(3, dim=-1))
        o = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        return rearrange(self.out(rearrange(o, "b n s e -> b s (n e)")), "b (h w) c -> b c h w", h=h)
''',
    },
    'x04_swish_wrong_called_directly': {
        'swish': '''
def swish(x):
    return x * torch.sigmoid(1.1 * x)
''',
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
    'x05_attention_block_without_norm': {
        'AttentionBlock': '''
class AttentionBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.attention = SelfAttention(channels, num_heads=4)

    def forward(self, x):
        return x + self.attention(x)
''',
    },
}
