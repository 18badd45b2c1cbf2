"""GroupNorm through F.group_norm or F.layer_norm, SiLU and swish written other ways, and step
embeddings in other layouts and conventions, from a table or a frozen parameter.

`STYLES[name] = {class or function name: replacement source}` (see the package's docstring)."""

STYLES: dict[str, dict[str, str]] = {
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
}
