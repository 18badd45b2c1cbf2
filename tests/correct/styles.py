"""More correct styles, each as replacements of some of the solution's classes: SelfAttention
through Conv1d, ModuleDict, bmm with heads in the batch, F.multi_head_attention_forward,
nn.MultiheadAttention (wrapped or subclassed), bare parameters in several layouts, per-head layers;
GroupNorm through F.group_norm or F.layer_norm; embeddings in other layouts and conventions, from a
table or a frozen parameter; blocks with ModuleLists, functional layers, inlined attention, layers
created out of order; Unets that read `.device` off a parameter, keep skips in a deque, or hold
their parts in a ModuleDict.

`STYLES[name] = {class or function name: replacement source}`; `build(replacements)` gives the
lesson's source with those definitions replaced. `SPILLS` are wrong answers to one exercise that
must cost that exercise only: the composite blocks built on them still pass.
"""

from __future__ import annotations

import re

# Names the replacements use beyond those the lesson imports.
HEADER = "import math\nimport torch\nimport torch.nn.functional as F\nfrom collections import deque, OrderedDict\n"


def replace_definition(source: str, name: str, new: str) -> str:
    """Replace the top-level class or def `name` (up to the next top-level definition or cell)."""
    match = re.search(rf"^(class|def) {name}\b.*?(?=^# %%|^(?:class|def) (?!{name}\b)\w)", source, re.S | re.M)
    if match is None:
        raise ValueError(f"no definition of {name} in the lesson source")
    return source[: match.start()] + new.strip("\n") + "\n\n\n" + source[match.end() :]


def build(source: str, replacements: dict[str, str]) -> str:
    for name, new in replacements.items():
        source = replace_definition(source, name, new)
    return source.replace('MAIN = __name__ == "__main__"', HEADER + 'MAIN = __name__ == "__main__"', 1)



STYLES: dict[str, dict[str, str]] = {
    'a01_conv1d_fused_einops': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """One Conv1d(C, 3C, 1) on the flattened pixels, split with einops into (three b h s d)."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.heads = num_heads
        self.to_qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.to_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        flat = x.view(b, c, h * w)
        q, k, v = rearrange(self.to_qkv(flat), "b (three h d) s -> three b h s d", three=3, h=self.heads)
        attn = (q @ k.transpose(-1, -2) * (c // self.heads) ** -0.5).softmax(-1)
        o = rearrange(attn @ v, "b h s d -> b (h d) s")
        return self.to_out(o).view(b, c, h, w)
''',
    },
    'a02_moduledict_einsum_weight': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """Projections in an nn.ModuleDict, applied with torch.einsum on .weight (F.linear never called);
    q and k each scaled by head_size**-0.25; softmax by exp/sum with max subtraction."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.n = num_heads
        self.proj = nn.ModuleDict({name: nn.Linear(channels, channels) for name in ("query", "key", "value", "out")})

    def project(self, name, x):
        layer = self.proj[name]
        return torch.einsum("bsc,oc->bso", x, layer.weight) + layer.bias

    def forward(self, x):
        b, c, h, w = x.shape
        s = rearrange(x, "b c h w -> b (h w) c")
        d = c // self.n
        q = rearrange(self.project("query", s), "b s (n d) -> b n s d", n=self.n) * d ** -0.25
        k = rearrange(self.project("key", s), "b s (n d) -> b n s d", n=self.n) * d ** -0.25
        v = rearrange(self.project("value", s), "b s (n d) -> b n s d", n=self.n)
        scores = torch.einsum("bnqd,bnkd->bnqk", q, k)
        e = torch.exp(scores - scores.max(dim=-1, keepdim=True).values)
        weights = e / e.sum(dim=-1, keepdim=True)
        o = rearrange(torch.einsum("bnqk,bnkd->bnqd", weights, v), "b n s d -> b s (n d)")
        return rearrange(self.project("out", o), "b (h w) c -> b c h w", h=h)
''',
    },
    'a03_view_bmm_heads_in_batch': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """x.view(b, c, -1), 1x1 Conv2d projections without bias, heads folded into the batch, bmm."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Conv2d(channels, channels, 1, bias=False)
        self.k = nn.Conv2d(channels, channels, 1, bias=False)
        self.v = nn.Conv2d(channels, channels, 1, bias=False)
        self.o = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x):
        b, c, h, w = x.shape
        n, d = self.num_heads, c // self.num_heads
        q = self.q(x).view(b * n, d, h * w)
        k = self.k(x).view(b * n, d, h * w)
        v = self.v(x).view(b * n, d, h * w)
        attn = torch.bmm(q.transpose(1, 2), k).div(math.sqrt(d)).softmax(dim=2)  # (bn, s_q, s_k)
        out = torch.bmm(v, attn.transpose(1, 2))  # (bn, d, s_q)
        return self.o(out.view(b, c, h, w))
''',
    },
    'a04_functional_mha_forward': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """torch.nn.functional.multi_head_attention_forward with bare in-projection parameters."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * channels, channels))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * channels))
        nn.init.xavier_uniform_(self.in_proj_weight)
        self.out_proj = nn.Linear(channels, channels)

    def forward(self, x):
        b, c, h, w = x.shape
        seq = rearrange(x, "b c h w -> (h w) b c")
        out, _ = F.multi_head_attention_forward(
            seq, seq, seq, c, self.num_heads, self.in_proj_weight, self.in_proj_bias, None, None, False, 0.0,
            self.out_proj.weight, self.out_proj.bias, training=self.training, need_weights=False)
        return rearrange(out, "(h w) b c -> b c h w", h=h)
''',
    },
    'a05_nn_multiheadattention': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """nn.MultiheadAttention(batch_first=True) on the flattened pixels."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.mha = nn.MultiheadAttention(channels, num_heads, batch_first=True)

    def forward(self, x):
        b, c, h, w = x.shape
        seq = x.flatten(2).transpose(1, 2)
        out, _ = self.mha(seq, seq, seq, need_weights=False)
        return out.transpose(1, 2).reshape(b, c, h, w)
''',
    },
    'a06_qk_fused_v_separate_conv_out': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """q, k from ONE Linear(C, 2C), v from its own Linear; output projection a 1x1 Conv2d after
    un-flattening; values computed first; SDPA."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.to_qk = nn.Linear(channels, 2 * channels)
        self.to_v = nn.Linear(channels, channels)
        self.out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x):
        b, c, h, w = x.shape
        s = x.flatten(2).transpose(1, 2)
        v = rearrange(self.to_v(s), "b s (n e) -> b n s e", n=self.num_heads)
        q, k = rearrange(self.to_qk(s), "b s (two n e) -> two b n s e", two=2, n=self.num_heads)
        o = F.scaled_dot_product_attention(q, k, v)
        o = rearrange(o, "b n (h w) e -> b (n e) h w", h=h)
        return self.out(o)
''',
    },
    'a07_sequential_wrappers_heads_other_name': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """Each projection wrapped in nn.Sequential(nn.Linear); num_heads stored as self.h; a
    ModuleList; k before q in forward; torch.baddbmm-free softmax(dim=3)."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.h = num_heads
        self.projs = nn.ModuleList([nn.Sequential(nn.Linear(channels, channels)) for _ in range(3)])
        self.final = nn.Sequential(nn.Linear(channels, channels))

    def forward(self, x):
        B, C, H, W = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(B, H * W, C)
        def heads(y):
            return y.reshape(B, H * W, self.h, C // self.h).permute(0, 2, 1, 3)
        k = heads(self.projs[1](tokens))
        q = heads(self.projs[0](tokens))
        v = heads(self.projs[2](tokens))
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(C // self.h)
        o = torch.matmul(w.softmax(dim=3), v).permute(0, 2, 1, 3).reshape(B, H * W, C)
        return self.final(o).reshape(B, H, W, C).permute(0, 3, 1, 2)
''',
    },
    'a08_arena_bare_params': {
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
    },
    'a09_per_head_linears': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """One Linear(C, head_size) per head and role, in ModuleLists; one output Linear."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        d = channels // num_heads
        self.queries = nn.ModuleList(nn.Linear(channels, d) for _ in range(num_heads))
        self.keys = nn.ModuleList(nn.Linear(channels, d) for _ in range(num_heads))
        self.values = nn.ModuleList(nn.Linear(channels, d) for _ in range(num_heads))
        self.out = nn.Linear(channels, channels)

    def forward(self, x):
        b, c, h, w = x.shape
        s = rearrange(x, "b c h w -> b (h w) c")
        outs = []
        for q_l, k_l, v_l in zip(self.queries, self.keys, self.values):
            q, k, v = q_l(s), k_l(s), v_l(s)
            a = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1)
            outs.append(a @ v)
        return rearrange(self.out(torch.cat(outs, dim=-1)), "b (h w) c -> b c h w", h=h)
''',
    },
    'a10_stacked_qkv_param_3cc': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """A single bare (3, C, C) parameter for q, k, v (rows out, cols in), its (3, C) bias, and an
    output Linear; chunked heads with torch.split."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.qkv_weight = nn.Parameter(torch.randn(3, channels, channels) / channels ** 0.5)
        self.qkv_bias = nn.Parameter(torch.zeros(3, channels))
        self.proj = nn.Linear(channels, channels)

    def forward(self, x):
        b, c, h, w = x.shape
        s = rearrange(x, "b c h w -> b (h w) c")
        qkv = torch.einsum("toc,bsc->tbso", self.qkv_weight, s) + self.qkv_bias[:, None, None, :]
        q, k, v = (torch.stack(y.split(c // self.num_heads, dim=-1), dim=1) for y in qkv)
        o = F.scaled_dot_product_attention(q, k, v)
        return rearrange(self.proj(torch.cat(o.unbind(1), dim=-1)), "b (h w) c -> b c h w", h=h)
''',
    },
    'a11_fused_per_head_layout_conv2d': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """Fused 1x1 Conv2d(C, 3C) read per head as (n t e) (the layout of some public code), image-form
    attention with einsum over (h w)."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        qkv = self.qkv(x).reshape(b, self.num_heads, 3, c // self.num_heads, h * w)
        q, k, v = qkv.unbind(2)  # each (b, n, e, s)
        a = torch.einsum("bneq,bnek->bnqk", q, k).mul(q.shape[2] ** -0.5).softmax(-1)
        o = torch.einsum("bnqk,bnek->bneq", a, v).reshape(b, c, h, w)
        return self.proj_out(o)
''',
    },
    'a12_x_at_w_transposed_params': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """Bare (C, C) matrices used as x @ W (in, out), with bare biases; the output matrix too."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.nh = num_heads
        make = lambda: nn.Parameter(torch.randn(channels, channels) / channels ** 0.5)
        self.Wq, self.Wk, self.Wv, self.Wo = make(), make(), make(), make()
        self.bq, self.bk, self.bv, self.bo = (nn.Parameter(torch.zeros(channels)) for _ in range(4))

    def forward(self, x):
        b, c, h, w = x.shape
        s = x.flatten(2).mT
        split = lambda y: y.unflatten(-1, (self.nh, c // self.nh)).transpose(1, 2)
        q, k, v = split(s @ self.Wq + self.bq), split(s @ self.Wk + self.bk), split(s @ self.Wv + self.bv)
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        return (o @ self.Wo + self.bo).mT.reshape(b, c, h, w)
''',
    },
    'a13_subclass_mha': {
        'SelfAttention': '''
class SelfAttention(nn.MultiheadAttention):
    """SelfAttention IS an nn.MultiheadAttention that reshapes the image around the parent's forward."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__(channels, num_heads, batch_first=True)

    def forward(self, x):
        b, c, h, w = x.shape
        seq = rearrange(x, "b c h w -> b (h w) c")
        out, _ = super().forward(seq, seq, seq, need_weights=False)
        return rearrange(out, "b (h w) c -> b c h w", h=h)
''',
    },
    'a14_chunk_kqv_order': {
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
        o = F.scaled_dot_product_attention(q, k, v)
        return rearrange(self.out(rearrange(o, "b n s e -> b s (n e)")), "b (h w) c -> b c h w", h=h)
''',
    },
    'a15_head_major_split_en': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """Heads split as '(e n)' (strided channels per head) and merged back the same way."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.W_Q, self.W_K, self.W_V, self.W_O = (nn.Linear(channels, channels) for _ in range(4))

    def forward(self, x):
        h = x.shape[2]
        s = rearrange(x, "b c h w -> b (h w) c")
        q, k, v = (rearrange(p(s), "b s (e n) -> b n s e", n=self.num_heads) for p in (self.W_Q, self.W_K, self.W_V))
        o = F.scaled_dot_product_attention(q, k, v)
        return rearrange(self.W_O(rearrange(o, "b n s e -> b s (e n)")), "b (h w) c -> b c h w", h=h)
''',
    },
    'g01_functional_group_norm': {
        'GroupNorm': '''
class GroupNorm(nn.Module):
    def __init__(self, num_groups, num_channels, eps=1e-05, affine=True, device=None, dtype=None):
        super().__init__()
        self.num_groups, self.eps, self.affine = num_groups, eps, affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_channels, device=device, dtype=dtype))
            self.bias = nn.Parameter(torch.zeros(num_channels, device=device, dtype=dtype))
        else:
            self.weight = self.bias = None

    def forward(self, x):
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
''',
    },
    'g02_var_unbiased_false_addcmul_G': {
        'GroupNorm': '''
class GroupNorm(nn.Module):
    """num_groups stored as self.G, eps as self.epsilon; var(unbiased=False); addcmul."""
    def __init__(self, num_groups, num_channels, eps=1e-05, affine=True, device=None, dtype=None):
        super().__init__()
        self.G, self.epsilon = num_groups, eps
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
        var = g.var(-1, unbiased=False, keepdim=True)
        y = ((g - mean) / torch.sqrt(var + self.epsilon)).view_as(x)
        if self.weight is None:
            return y
        return torch.addcmul(self.bias.view(1, -1, 1, 1), y, self.weight.view(1, -1, 1, 1))
''',
    },
    'g05_layer_norm_on_groups': {
        'GroupNorm': '''
class GroupNorm(nn.Module):
    """F.layer_norm over each group's (c h w), then the affine step."""
    def __init__(self, num_groups, num_channels, eps=1e-05, affine=True, device=None, dtype=None):
        super().__init__()
        self.num_groups, self.eps, self.affine = num_groups, eps, affine
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None

    def forward(self, x):
        b, c, h, w = x.shape
        g = x.reshape(b, self.num_groups, c // self.num_groups, h, w)
        y = F.layer_norm(g, g.shape[2:], eps=self.eps).reshape(b, c, h, w)
        if self.affine:
            y = y * self.weight.reshape(1, c, 1, 1) + self.bias.reshape(1, c, 1, 1)
        return y
''',
    },
    's01_cos_first_arange2': {
        'SinusoidalPositionEmbeddings': '''
class SinusoidalPositionEmbeddings(nn.Module):
    """cosines first, frequencies exp(-ln(10000) * arange(0, d, 2) / d), computed in forward."""
    def __init__(self, embedding_size: int):
        super().__init__()
        self.d = embedding_size

    def forward(self, x):
        freqs = torch.exp(-math.log(10000.0) * torch.arange(0, self.d, 2, device=x.device).float() / self.d)
        ang = x.float()[:, None] * freqs[None, :]
        return torch.cat((ang.cos(), ang.sin()), dim=-1)
''',
    },
    's02_polar_interleaved_cos_sin': {
        'SinusoidalPositionEmbeddings': '''
class SinusoidalPositionEmbeddings(nn.Module):
    """torch.polar -> view_as_real: interleaved (cos, sin) pairs; HF-style second frequency convention."""
    def __init__(self, embedding_size: int):
        super().__init__()
        half = embedding_size // 2
        self.register_buffer("inv", torch.exp(-math.log(10000) * torch.arange(half) / (half - 1)), persistent=False)

    def forward(self, x):
        ang = torch.outer(x.float(), self.inv)
        return torch.view_as_real(torch.polar(torch.ones_like(ang), ang)).flatten(1)
''',
    },
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
    'n01_moduledict_separate_mlp_function_embed': {
        'Unet': '''
class Unet(DiffusionModel):
    def __init__(self, image_shape, channels=128, dim_mults=(1, 2, 4, 8), groups=4, max_steps=1000):
        super().__init__()
        self.noise_schedule = None
        self.img_shape = image_shape

        # the embedding as a plain function, the MLP as separate attributes, blocks in a ModuleDict
        self.max_steps = max_steps
        self.embed = lambda steps: SinusoidalPositionEmbeddings(max_steps).to(steps.device)(steps)
        self.lin1 = nn.Linear(max_steps, 4 * channels)
        self.lin2 = nn.Linear(4 * channels, 4 * channels)
        dims = [channels] + [m * channels for m in dim_mults]
        self.blocks = nn.ModuleDict()
        self.blocks["in"] = nn.Conv2d(image_shape[0], channels, 7, padding=3)
        n = len(dim_mults)
        for i in range(n):
            self.blocks[f"down{i}"] = DownBlock(dims[i], dims[i + 1], 4 * channels, groups, i < n - 1)
        self.blocks["mid"] = MidBlock(dims[-1], 4 * channels, groups)
        for i in reversed(range(1, n)):
            self.blocks[f"up{i}"] = UpBlock(dims[i], dims[i + 1], 4 * channels, groups, True)
        self.blocks["out_res"] = ResidualBlock(channels, channels, 4 * channels, groups)
        self.blocks["out"] = nn.Conv2d(channels, image_shape[0], 1)
        self.n = n

    def forward(self, x, num_steps):
        emb = self.lin2(F.gelu(self.lin1(self.embed(num_steps).to(x.dtype))))
        h = self.blocks["in"](x)
        skips = {}
        for i in range(self.n):
            h, skips[i] = self.blocks[f"down{i}"](h, emb)
        h = self.blocks["mid"](h, emb)
        for i in reversed(range(1, self.n)):
            h = self.blocks[f"up{i}"](h, emb, skips[i])
        return self.blocks["out"](self.blocks["out_res"](h, emb))
''',
    },
    'n02_deque_zip_reversed_float': {
        'Unet': '''
class Unet(DiffusionModel):
    def __init__(self, image_shape, channels=128, dim_mults=(1, 2, 4, 8), groups=4, max_steps=1000):
        super().__init__()
        self.noise_schedule = None
        self.img_shape = image_shape

        c = channels
        self.time = nn.Sequential(SinusoidalPositionEmbeddings(max_steps), nn.Linear(max_steps, 4 * c), nn.GELU(),
                                  nn.Linear(4 * c, 4 * c))
        self.stem = nn.Conv2d(image_shape[0], c, kernel_size=(7, 7), padding=(3, 3))
        chans = [c, *[m * c for m in dim_mults]]
        self.downs = nn.ModuleList()
        for i, (a, b) in enumerate(zip(chans, chans[1:])):
            self.downs.append(DownBlock(a, b, 4 * c, groups, downsample=(i != len(dim_mults) - 1)))
        self.mid = MidBlock(chans[-1], 4 * c, groups)
        self.ups = nn.ModuleList(UpBlock(a, b, 4 * c, groups, True) for a, b in list(zip(chans, chans[1:]))[:0:-1])
        self.head = nn.Sequential()
        self.final_res = ResidualBlock(c, c, 4 * c, groups)
        self.final_conv = nn.Conv2d(c, image_shape[0], 1)

    def forward(self, x, num_steps):
        emb = self.time(num_steps.float())
        h = self.stem(x)
        skips = deque()
        for down in self.downs:
            h, s = down(h, emb)
            skips.append(s)
        h = self.mid(h, emb)
        for up, s in zip(self.ups, reversed(skips)):
            h = up(h, emb, s)
        return self.final_conv(self.final_res(h, emb))
''',
    },
    'n03_final_block_first_next_params_device': {
        'Unet': '''
class Unet(DiffusionModel):
    def __init__(self, image_shape, channels=128, dim_mults=(1, 2, 4, 8), groups=4, max_steps=1000):
        super().__init__()
        self.noise_schedule = None
        self.img_shape = image_shape

        # creates the output layers first (they are simple), and uses part 1's idiom
        # next(self.parameters()).device to put num_steps on the model's device
        self.out_block = ResidualBlock(channels, channels, 4 * channels, groups)
        self.out_conv = nn.Conv2d(channels, image_shape[0], kernel_size=1)
        self.step_mlp = nn.Sequential(SinusoidalPositionEmbeddings(max_steps), nn.Linear(max_steps, 4 * channels),
                                      nn.GELU(), nn.Linear(4 * channels, 4 * channels))
        self.in_conv = nn.Conv2d(image_shape[0], channels, kernel_size=7, padding=3)
        dims = [channels] + [m * channels for m in dim_mults]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList(DownBlock(a, b, 4 * channels, groups, i < len(pairs) - 1) for i, (a, b) in enumerate(pairs))
        self.mid = MidBlock(dims[-1], 4 * channels, groups)
        self.ups = nn.ModuleList(UpBlock(a, b, 4 * channels, groups, True) for a, b in reversed(pairs[1:]))

    def forward(self, x, num_steps):
        num_steps = num_steps.to(next(self.parameters()).device)
        emb = self.step_mlp(num_steps)
        h = self.in_conv(x)
        skips = []
        for down in self.downs:
            h, skip = down(h, emb)
            skips.append(skip)
        h = self.mid(h, emb)
        for up in self.ups:
            h = up(h, emb, skips.pop())
        return self.out_conv(self.out_block(h, emb))
''',
    },
    'n04_final_conv_first_to_dtype': {
        'Unet': '''
class Unet(DiffusionModel):
    def __init__(self, image_shape, channels=128, dim_mults=(1, 2, 4, 8), groups=4, max_steps=1000):
        super().__init__()
        self.noise_schedule = None
        self.img_shape = image_shape

        # final conv created first; the embedding cast to the step MLP's dtype; list of skips indexed
        self.final = nn.Conv2d(channels, image_shape[0], 1)
        self.sin = SinusoidalPositionEmbeddings(max_steps)
        self.mlp = nn.Sequential(nn.Linear(max_steps, 4 * channels), nn.GELU(), nn.Linear(4 * channels, 4 * channels))
        dims = [channels] + [m * channels for m in dim_mults]
        self.first = nn.Conv2d(image_shape[0], channels, 7, 1, 3)
        self.downs = nn.ModuleList([DownBlock(dims[i], dims[i + 1], 4 * channels, groups, i + 1 < len(dim_mults))
                                    for i in range(len(dim_mults))])
        self.mid = MidBlock(dims[-1], 4 * channels, groups)
        self.ups = nn.ModuleList([UpBlock(dims[i], dims[i + 1], 4 * channels, groups, True)
                                  for i in range(len(dim_mults) - 1, 0, -1)])
        self.last_res = ResidualBlock(channels, channels, 4 * channels, groups)

    def forward(self, x, num_steps):
        emb = self.mlp(self.sin(num_steps).to(self.mlp[0].weight.dtype))
        h = self.first(x)
        skips = []
        for d in self.downs:
            h, s = d(h, emb)
            skips.append(s)
        h = self.mid(h, emb)
        for j, u in enumerate(self.ups):
            h = u(h, emb, skips[-1 - j])
        return self.final(self.last_res(h, emb))
''',
    },
    'a16_per_head_nec_params': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """Per-head bare parameters in nn.Linear's (out, in) convention: W_Q/W_K/W_V of shape
    (heads, head_size, channels), biases (heads, head_size); a plain nn.Linear output projection."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        e = channels // num_heads
        self.W_Q, self.W_K, self.W_V = (nn.Parameter(torch.randn(num_heads, e, channels) / channels ** 0.5) for _ in range(3))
        self.b_Q, self.b_K, self.b_V = (nn.Parameter(torch.zeros(num_heads, e)) for _ in range(3))
        self.out = nn.Linear(channels, channels)

    def forward(self, x):
        h = x.shape[2]
        s = rearrange(x, "b c h w -> b (h w) c")
        q, k, v = (torch.einsum("nec,bsc->bnse", W, s) + b[None, :, None, :]
                   for W, b in ((self.W_Q, self.b_Q), (self.W_K, self.b_K), (self.W_V, self.b_V)))
        o = F.scaled_dot_product_attention(q, k, v)
        return rearrange(self.out(rearrange(o, "b n s e -> b s (n e)")), "b (h w) c -> b c h w", h=h)
''',
    },
    'a17_stacked_linear_weights_param': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """One bare (3C, C) in-projection in nn.Linear's (out, in) convention, used through a
    reshape to (3, C, C) and torch.einsum; bias (3, C)."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.w_in = nn.Parameter(torch.randn(3 * channels, channels) / channels ** 0.5)
        self.b_in = nn.Parameter(torch.zeros(3 * channels))
        self.w_out = nn.Linear(channels, channels)

    def forward(self, x):
        b, c, h, w = x.shape
        s = rearrange(x, "b c h w -> b (h w) c")
        qkv = F.linear(s, self.w_in, self.b_in)
        q, k, v = rearrange(qkv, "b s (t n e) -> t b n s e", t=3, n=self.num_heads)
        o = F.scaled_dot_product_attention(q, k, v)
        return rearrange(self.w_out(rearrange(o, "b n s e -> b s (n e)")), "b (h w) c -> b c h w", h=h)
''',
    },
    'n03b_final_block_first_only': {
        'Unet': '''
class Unet(DiffusionModel):
    def __init__(self, image_shape, channels=128, dim_mults=(1, 2, 4, 8), groups=4, max_steps=1000):
        super().__init__()
        self.noise_schedule = None
        self.img_shape = image_shape

        # creates the output layers first (they are simple), and uses part 1's idiom
        # next(self.parameters()).device to put num_steps on the model's device
        self.out_block = ResidualBlock(channels, channels, 4 * channels, groups)
        self.out_conv = nn.Conv2d(channels, image_shape[0], kernel_size=1)
        self.step_mlp = nn.Sequential(SinusoidalPositionEmbeddings(max_steps), nn.Linear(max_steps, 4 * channels),
                                      nn.GELU(), nn.Linear(4 * channels, 4 * channels))
        self.in_conv = nn.Conv2d(image_shape[0], channels, kernel_size=7, padding=3)
        dims = [channels] + [m * channels for m in dim_mults]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList(DownBlock(a, b, 4 * channels, groups, i < len(pairs) - 1) for i, (a, b) in enumerate(pairs))
        self.mid = MidBlock(dims[-1], 4 * channels, groups)
        self.ups = nn.ModuleList(UpBlock(a, b, 4 * channels, groups, True) for a, b in reversed(pairs[1:]))

    def forward(self, x, num_steps):
        pass
        emb = self.step_mlp(num_steps)
        h = self.in_conv(x)
        skips = []
        for down in self.downs:
            h, skip = down(h, emb)
            skips.append(skip)
        h = self.mid(h, emb)
        for up in self.ups:
            h = up(h, emb, skips.pop())
        return self.out_conv(self.out_block(h, emb))
''',
    },
    'n03c_next_params_device_only': {
        'Unet': '''
class Unet(DiffusionModel):
    def __init__(self, image_shape, channels=128, dim_mults=(1, 2, 4, 8), groups=4, max_steps=1000):
        super().__init__()
        self.noise_schedule = None
        self.img_shape = image_shape

        self.step_mlp = nn.Sequential(SinusoidalPositionEmbeddings(max_steps), nn.Linear(max_steps, 4 * channels),
                                      nn.GELU(), nn.Linear(4 * channels, 4 * channels))
        self.in_conv = nn.Conv2d(image_shape[0], channels, kernel_size=7, padding=3)
        dims = [channels] + [m * channels for m in dim_mults]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList(DownBlock(a, b, 4 * channels, groups, i < len(pairs) - 1) for i, (a, b) in enumerate(pairs))
        self.mid = MidBlock(dims[-1], 4 * channels, groups)
        self.ups = nn.ModuleList(UpBlock(a, b, 4 * channels, groups, True) for a, b in reversed(pairs[1:]))
        self.out_block = ResidualBlock(channels, channels, 4 * channels, groups)
        self.out_conv = nn.Conv2d(channels, image_shape[0], kernel_size=1)
    def forward(self, x, num_steps):
        num_steps = num_steps.to(next(self.parameters()).device)
        emb = self.step_mlp(num_steps)
        h = self.in_conv(x)
        skips = []
        for down in self.downs:
            h, skip = down(h, emb)
            skips.append(skip)
        h = self.mid(h, emb)
        for up in self.ups:
            h = up(h, emb, skips.pop())
        return self.out_conv(self.out_block(h, emb))
''',
    },
    'a18_per_head_parameterlist': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """Per-head bare (channels, head_size) matrices in nn.ParameterLists, used as x @ W; no biases;
    output projection a bare (channels, channels) matrix used as x @ W plus a bias."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        e = channels // num_heads
        mats = lambda: nn.ParameterList(nn.Parameter(torch.randn(channels, e) / channels ** 0.5) for _ in range(num_heads))
        self.Wq, self.Wk, self.Wv = mats(), mats(), mats()
        self.Wo = nn.Parameter(torch.randn(channels, channels) / channels ** 0.5)
        self.bo = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        h = x.shape[2]
        s = rearrange(x, "b c h w -> b (h w) c")
        heads = []
        for Wq, Wk, Wv in zip(self.Wq, self.Wk, self.Wv):
            q, k, v = s @ Wq, s @ Wk, s @ Wv
            heads.append(((q @ k.mT) / q.shape[-1] ** 0.5).softmax(-1) @ v)
        return rearrange(torch.cat(heads, -1) @ self.Wo + self.bo, "b (h w) c -> b c h w", h=h)
''',
    },
    's03_frozen_parameter_frequencies': {
        'SinusoidalPositionEmbeddings': '''
class SinusoidalPositionEmbeddings(nn.Module):
    """Frequencies kept as a frozen nn.Parameter (requires_grad=False), which also moves with .to()."""
    def __init__(self, embedding_size: int):
        super().__init__()
        k = torch.arange(embedding_size // 2, dtype=torch.float32)
        self.freqs = nn.Parameter(1.0 / 10000 ** (2 * k / embedding_size), requires_grad=False)

    def forward(self, x):
        ang = x.float()[:, None] * self.freqs
        return torch.stack([ang.sin(), ang.cos()], dim=-1).flatten(1)
''',
    },
    'n05_buffer_lookup_table': {
        'Unet': '''
class Unet(DiffusionModel):
    def __init__(self, image_shape, channels=128, dim_mults=(1, 2, 4, 8), groups=4, max_steps=1000):
        super().__init__()
        self.noise_schedule = None
        self.img_shape = image_shape

        self.step_mlp = nn.Sequential(SinusoidalPositionEmbeddings(max_steps), nn.Linear(max_steps, 4 * channels),
                                      nn.GELU(), nn.Linear(4 * channels, 4 * channels))
        self.in_conv = nn.Conv2d(image_shape[0], channels, kernel_size=7, padding=3)
        # every step's embedding computed once, looked up in forward
        self.register_buffer('table', SinusoidalPositionEmbeddings(max_steps)(torch.arange(max_steps + 1)))
        dims = [channels] + [m * channels for m in dim_mults]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList(DownBlock(a, b, 4 * channels, groups, i < len(pairs) - 1) for i, (a, b) in enumerate(pairs))
        self.mid = MidBlock(dims[-1], 4 * channels, groups)
        self.ups = nn.ModuleList(UpBlock(a, b, 4 * channels, groups, True) for a, b in reversed(pairs[1:]))
        self.out_block = ResidualBlock(channels, channels, 4 * channels, groups)
        self.out_conv = nn.Conv2d(channels, image_shape[0], kernel_size=1)
    def forward(self, x, num_steps):
        emb = self.step_mlp[1:](self.table[num_steps])
        h = self.in_conv(x)
        skips = []
        for down in self.downs:
            h, skip = down(h, emb)
            skips.append(skip)
        h = self.mid(h, emb)
        for up in self.ups:
            h = up(h, emb, skips.pop())
        return self.out_conv(self.out_block(h, emb))
''',
    },
    'n06_frozen_nn_embedding_table': {
        'Unet': '''
class Unet(DiffusionModel):
    def __init__(self, image_shape, channels=128, dim_mults=(1, 2, 4, 8), groups=4, max_steps=1000):
        super().__init__()
        self.noise_schedule = None
        self.img_shape = image_shape

        self.step_mlp = nn.Sequential(SinusoidalPositionEmbeddings(max_steps), nn.Linear(max_steps, 4 * channels),
                                      nn.GELU(), nn.Linear(4 * channels, 4 * channels))
        self.in_conv = nn.Conv2d(image_shape[0], channels, kernel_size=7, padding=3)
        # a frozen lookup table of every step's sinusoidal embedding
        self.table = nn.Embedding.from_pretrained(SinusoidalPositionEmbeddings(max_steps)(torch.arange(max_steps + 1)), freeze=True)
        dims = [channels] + [m * channels for m in dim_mults]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList(DownBlock(a, b, 4 * channels, groups, i < len(pairs) - 1) for i, (a, b) in enumerate(pairs))
        self.mid = MidBlock(dims[-1], 4 * channels, groups)
        self.ups = nn.ModuleList(UpBlock(a, b, 4 * channels, groups, True) for a, b in reversed(pairs[1:]))
        self.out_block = ResidualBlock(channels, channels, 4 * channels, groups)
        self.out_conv = nn.Conv2d(channels, image_shape[0], kernel_size=1)
    def forward(self, x, num_steps):
        emb = self.step_mlp[1:](self.table(num_steps))
        h = self.in_conv(x)
        skips = []
        for down in self.downs:
            h, skip = down(h, emb)
            skips.append(skip)
        h = self.mid(h, emb)
        for up in self.ups:
            h = up(h, emb, skips.pop())
        return self.out_conv(self.out_block(h, emb))
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
    'a19_assert_against_out_proj_weight': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """The reference layout, plus an assert that the input has the channels the layers were built for,
    checked against the output projection's weight."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        assert channels % num_heads == 0
        self.num_heads = num_heads
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(channels, channels) for _ in range(3))
        self.out_proj = nn.Linear(channels, channels)

    def forward(self, x):
        b, c, h, w = x.shape
        assert c == self.out_proj.weight.shape[0], f"expected {self.out_proj.weight.shape[0]} channels, got {c}"
        s = rearrange(x, "b c h w -> b (h w) c")
        q, k, v = (rearrange(p(s), "b s (n e) -> b n s e", n=self.num_heads) for p in (self.q_proj, self.k_proj, self.v_proj))
        o = F.scaled_dot_product_attention(q, k, v)
        return rearrange(self.out_proj(rearrange(o, "b n s e -> b s (n e)")), "b (h w) c -> b c h w", h=h)
''',
    },
    'a20_conv1x1_padding_same': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """1x1 Conv2d projections written with padding="same" (a no-op for a 1x1 kernel)."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.to_qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1, padding="same")
        self.to_out = nn.Conv2d(channels, channels, kernel_size=1, padding="same")

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = rearrange(self.to_qkv(x), "b (t n e) h w -> t b n (h w) e", t=3, n=self.num_heads)
        o = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(rearrange(o, "b n (h w) e -> b (n e) h w", h=h))
''',
    },
    'n07_step_mlp_matmul_weight_T': {
        'Unet': '''
class Unet(DiffusionModel):
    def __init__(self, image_shape, channels=128, dim_mults=(1, 2, 4, 8), groups=4, max_steps=1000):
        super().__init__()
        self.noise_schedule = None
        self.img_shape = image_shape

        self.pos = SinusoidalPositionEmbeddings(max_steps)
        self.t1 = nn.Linear(max_steps, 4 * channels)
        self.t2 = nn.Linear(4 * channels, 4 * channels)
        self.in_conv = nn.Conv2d(image_shape[0], channels, kernel_size=7, padding=3)
        dims = [channels] + [m * channels for m in dim_mults]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList(DownBlock(a, b, 4 * channels, groups, i < len(pairs) - 1) for i, (a, b) in enumerate(pairs))
        self.mid = MidBlock(dims[-1], 4 * channels, groups)
        self.ups = nn.ModuleList(UpBlock(a, b, 4 * channels, groups, True) for a, b in reversed(pairs[1:]))
        self.out_block = ResidualBlock(channels, channels, 4 * channels, groups)
        self.out_conv = nn.Conv2d(channels, image_shape[0], kernel_size=1)
    def forward(self, x, num_steps):
        # the step MLP written as matrix products with the layers' weights
        emb = F.gelu(self.pos(num_steps) @ self.t1.weight.T + self.t1.bias)
        emb = emb @ self.t2.weight.T + self.t2.bias
        h = self.in_conv(x)
        skips = []
        for down in self.downs:
            h, skip = down(h, emb)
            skips.append(skip)
        h = self.mid(h, emb)
        for up in self.ups:
            h = up(h, emb, skips.pop())
        return self.out_conv(self.out_block(h, emb))
''',
    },
    'a21_per_head_sliced_out_proj': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """A loop over heads that slices a fused Linear(C, 3C)'s weight per head and role, and sums each
    head's contribution through its slice of the output projection's weight."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)

    def forward(self, x):
        b, c, h, w = x.shape
        e = c // self.num_heads
        s = rearrange(x, "b c h w -> b (h w) c")
        W, B = self.qkv.weight, self.qkv.bias
        total = self.out.bias
        for i in range(self.num_heads):
            q, k, v = (F.linear(s, W[j * c + i * e: j * c + (i + 1) * e], B[j * c + i * e: j * c + (i + 1) * e]) for j in range(3))
            a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(e), dim=-1)
            total = total + (a @ v) @ self.out.weight[:, i * e:(i + 1) * e].T
        return rearrange(total, "b (h w) c -> b c h w", h=h)
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
    'a22_mha_without_bias': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """nn.MultiheadAttention(bias=False), sequence-first layout."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.attn = nn.MultiheadAttention(channels, num_heads, bias=False)

    def forward(self, x):
        b, c, h, w = x.shape
        seq = rearrange(x, "b c h w -> (h w) b c")
        return rearrange(self.attn(seq, seq, seq, need_weights=False)[0], "(h w) b c -> b c h w", h=h)
''',
    },
    's04_reversed_frequency_order': {
        'SinusoidalPositionEmbeddings': '''
class SinusoidalPositionEmbeddings(nn.Module):
    """Slowest frequency first: periods grow from left to right... reversed, sines then cosines."""
    def __init__(self, embedding_size: int):
        super().__init__()
        k = torch.arange(embedding_size // 2 - 1, -1, -1, dtype=torch.float32)  # d/2-1, ..., 1, 0
        self.register_buffer("freqs", 10000.0 ** (-2 * k / embedding_size))

    def forward(self, x):
        ang = x.float()[:, None] * self.freqs[None]
        return torch.cat([ang.sin(), ang.cos()], dim=-1)
''',
    },
    'n08_reversed_embedding_with_lookup_table': {
        'SinusoidalPositionEmbeddings': '''
class SinusoidalPositionEmbeddings(nn.Module):
    """Slowest frequency first: periods grow from left to right... reversed, sines then cosines."""
    def __init__(self, embedding_size: int):
        super().__init__()
        k = torch.arange(embedding_size // 2 - 1, -1, -1, dtype=torch.float32)  # d/2-1, ..., 1, 0
        self.register_buffer("freqs", 10000.0 ** (-2 * k / embedding_size))

    def forward(self, x):
        ang = x.float()[:, None] * self.freqs[None]
        return torch.cat([ang.sin(), ang.cos()], dim=-1)
''',
        'Unet': '''
class Unet(DiffusionModel):
    def __init__(self, image_shape, channels=128, dim_mults=(1, 2, 4, 8), groups=4, max_steps=1000):
        super().__init__()
        self.noise_schedule = None
        self.img_shape = image_shape

        self.step_mlp = nn.Sequential(SinusoidalPositionEmbeddings(max_steps), nn.Linear(max_steps, 4 * channels),
                                      nn.GELU(), nn.Linear(4 * channels, 4 * channels))
        self.in_conv = nn.Conv2d(image_shape[0], channels, kernel_size=7, padding=3)
        # every step's embedding computed once, looked up in forward
        self.register_buffer('table', SinusoidalPositionEmbeddings(max_steps)(torch.arange(max_steps + 1)))
        dims = [channels] + [m * channels for m in dim_mults]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList(DownBlock(a, b, 4 * channels, groups, i < len(pairs) - 1) for i, (a, b) in enumerate(pairs))
        self.mid = MidBlock(dims[-1], 4 * channels, groups)
        self.ups = nn.ModuleList(UpBlock(a, b, 4 * channels, groups, True) for a, b in reversed(pairs[1:]))
        self.out_block = ResidualBlock(channels, channels, 4 * channels, groups)
        self.out_conv = nn.Conv2d(channels, image_shape[0], kernel_size=1)
    def forward(self, x, num_steps):
        emb = self.step_mlp[1:](self.table[num_steps])
        h = self.in_conv(x)
        skips = []
        for down in self.downs:
            h, skip = down(h, emb)
            skips.append(skip)
        h = self.mid(h, emb)
        for up in self.ups:
            h = up(h, emb, skips.pop())
        return self.out_conv(self.out_block(h, emb))
''',
    },
    'n09_reversed_embedding_module_in_step_mlp': {
        'SinusoidalPositionEmbeddings': '''
class SinusoidalPositionEmbeddings(nn.Module):
    """Slowest frequency first: periods grow from left to right... reversed, sines then cosines."""
    def __init__(self, embedding_size: int):
        super().__init__()
        k = torch.arange(embedding_size // 2 - 1, -1, -1, dtype=torch.float32)  # d/2-1, ..., 1, 0
        self.register_buffer("freqs", 10000.0 ** (-2 * k / embedding_size))

    def forward(self, x):
        ang = x.float()[:, None] * self.freqs[None]
        return torch.cat([ang.sin(), ang.cos()], dim=-1)
''',
    },
    'a23_functional_mha_separate_proj_weights': {
        'SelfAttention': '''
class SelfAttention(nn.Module):
    """torch's own functional multi-head attention with separate (bias-free) q/k/v projection weights:
    F.multi_head_attention_forward(..., use_separate_proj_weight=True)."""
    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(channels, channels, bias=False)
        self.k = nn.Linear(channels, channels, bias=False)
        self.v = nn.Linear(channels, channels, bias=False)
        self.o = nn.Linear(channels, channels)

    def forward(self, x):
        b, c, h, w = x.shape
        seq = rearrange(x, "b c h w -> (h w) b c")
        out, _ = F.multi_head_attention_forward(
            seq, seq, seq, c, self.num_heads, None, None, None, None, False, 0.0, self.o.weight, self.o.bias,
            training=self.training, need_weights=False, use_separate_proj_weight=True,
            q_proj_weight=self.q.weight, k_proj_weight=self.k.weight, v_proj_weight=self.v.weight)
        return rearrange(out, "(h w) b c -> b c h w", h=h)
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
