"""SelfAttention written other ways: Conv1d, ModuleDict, bmm with heads in the batch,
F.multi_head_attention_forward, nn.MultiheadAttention (wrapped or subclassed), bare parameters in
several layouts, per-head layers.

`STYLES[name] = {class or function name: replacement source}` (see the package's docstring)."""

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
}
