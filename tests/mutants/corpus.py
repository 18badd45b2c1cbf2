"""The corpus: each entry is one realistic mistake, the visible test that must catch it, and a
distinctive part of the diagnosis that test must give."""

from __future__ import annotations

from grader.lesson.samples import MID_BLOCK_ORDER, SOFTMAX_OVER_QUERIES, UNBIASED_VARIANCE
from mutants import Mutant

GN_SQRT = "t.sqrt(var + self.eps)"
GN_AFFINE = 'normed = normed * rearrange(self.weight, "c -> c 1 1") + rearrange(self.bias, "c -> c 1 1")'
EMB_STACK = "t.stack([angles.sin(), angles.cos()], dim=-1)"
SWISH = "return x * t.sigmoid(x)"
ATTN_SPLIT = '"b s (n e) -> b n s e"'
ATTN_MERGE = '"b n s e -> b s (n e)"'
ATTN_HEADS = 'rearrange(proj(pixels), "b s (n e) -> b n s e", n=self.num_heads)'
ATTN_OUT = 'out = self.W_O(rearrange(mixed, "b n s e -> b s (n e)"))'
ATTN_BLOCK = "return x + self.attention(self.norm(x))"
RES_EMB = 'h = h + rearrange(self.step_mlp(time_emb), "b c -> b c 1 1")'
RES_ROUND2 = "h = self.act(self.norm2(self.conv2(h)))"
DOWN_RETURN = "return self.down(skip), skip"
DOWN_ASSERT = 'assert x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0, f"cannot halve an odd size {tuple(x.shape[-2:])}"'
UP_CAT = "h = t.cat([x, skip], dim=1)"
UP_RES1 = "ResidualBlock(2 * dim_out, dim_in"
UP_CONV = "ConvTranspose2d(dim_in, dim_in, kernel_size=4, stride=2, padding=1) if upsample"
CONVT_KERNEL = 'kernel = rearrange(self.weight.flip(-1, -2), "i o kh kw -> o i kh kw")'

MUTANTS = (
    # GroupNorm
    Mutant(
        "gn_unbiased_variance",
        "groupnorm",
        (UNBIASED_VARIANCE[1:],),
        "unbiased variance",
        {"affine": False},
    ),
    Mutant(
        "gn_eps_outside_sqrt",
        "groupnorm",
        ((GN_SQRT, "(t.sqrt(var) + self.eps)"),),
        "eps is added outside the square root",
        {"affine": False},
    ),
    Mutant(
        "gn_eps_ignored", "groupnorm", ((GN_SQRT, "t.sqrt(var + 1e-5)"),), "ignores the eps argument", {"affine": True}
    ),
    Mutant("gn_no_eps", "groupnorm", ((GN_SQRT, "t.sqrt(var)"),), "adds no eps", {"affine": False}),
    Mutant(
        "gn_channels_c_g",
        "groupnorm",
        (
            ('rearrange(x, "b (g c) h w -> b g c h w"', 'rearrange(x, "b (c g) h w -> b g c h w"'),
            ('"b g c h w -> b (g c) h w"', '"b g c h w -> b (c g) h w"'),
        ),
        "groups are not adjacent channels",
        {"affine": True},
    ),
    Mutant(
        "gn_instance_statistics",
        "groupnorm",
        (
            ("grouped.mean(dim=(2, 3, 4)", "grouped.mean(dim=(3, 4)"),
            ("(centred**2).mean(dim=(2, 3, 4)", "(centred**2).mean(dim=(3, 4)"),
        ),
        "each channel on its own (instance norm)",
        {"affine": False},
    ),
    Mutant(
        "gn_batch_statistics",
        "groupnorm",
        (
            ("grouped.mean(dim=(2, 3, 4)", "grouped.mean(dim=(0, 2, 3, 4)"),
            ("(centred**2).mean(dim=(2, 3, 4)", "(centred**2).mean(dim=(0, 2, 3, 4)"),
        ),
        "mix the examples of the batch",
        {"affine": False},
    ),
    Mutant(
        "gn_ignores_num_groups",
        "groupnorm",
        (("g=self.num_groups)", "g=1)"),),
        "num_groups is ignored",
        {"affine": False},
    ),
    Mutant(
        "gn_affine_ignored", "groupnorm", ((GN_AFFINE, "normed = normed"),), "without the affine step", {"affine": True}
    ),
    # Sinusoidal embeddings
    Mutant(
        "emb_wrong_frequencies",
        "sinusoidal_embeddings",
        (("10000 ** (2 * k / embedding_size)", "10000 ** (k / embedding_size)"),),
        "the frequencies are wrong",
    ),
    Mutant(
        "emb_sin_only",
        "sinusoidal_embeddings",
        ((EMB_STACK, "t.stack([angles.sin(), angles.sin()], dim=-1)"),),
        "you have only sines",
    ),
    Mutant(
        "emb_learned_frequencies",
        "sinusoidal_embeddings",
        (
            (
                'self.register_buffer("frequencies", 1.0 / 10000 ** (2 * k / embedding_size))',
                "self.frequencies = nn.Parameter(1.0 / 10000 ** (2 * k / embedding_size))",
            ),
        ),
        "self.register_buffer",
    ),
    Mutant(
        "emb_integer_steps_matmul",
        "sinusoidal_embeddings",
        (
            (
                'einsum("batch, freq -> batch freq", x.float(), self.frequencies)',
                "x[:, None] @ self.frequencies[None, :]",
            ),
        ),
        "convert them with .float()",
    ),
    # swish
    Mutant("swish_without_x", "swish", ((SWISH, "return t.sigmoid(x)"),), "multiply it by x"),
    Mutant("swish_in_place", "swish", ((SWISH, "return x.mul_(t.sigmoid(x))"),), "modifies its input in place"),
    # SelfAttention
    Mutant(
        "attn_softmax_over_queries",
        "self_attention",
        (SOFTMAX_OVER_QUERIES[1:],),
        "sum to 1 over the keys",
    ),
    Mutant("attn_no_scaling", "self_attention", ((" / self.head_size**0.5", ""),), "not scaled"),
    Mutant(
        "attn_scaled_by_channels",
        "self_attention",
        (("/ self.head_size**0.5", "/ self.channels**0.5"),),
        "1/sqrt(channels)",
    ),
    Mutant(
        "attn_heads_without_transpose",
        "self_attention",
        (
            (ATTN_HEADS, "proj(pixels).reshape(x.shape[0], self.num_heads, -1, self.head_size)"),
            ('rearrange(mixed, "b n s e -> b s (n e)")', "mixed.reshape(x.shape[0], -1, self.channels)"),
        ),
        "does not move the head axis",
    ),
    Mutant(
        "attn_single_head",
        "self_attention",
        (('"b s (n e) -> b n s e", n=self.num_heads)', '"b s (n e) -> b n s e", n=1)'),),
        "single head",
    ),
    Mutant(
        "attn_over_channels",
        "self_attention",
        (
            (ATTN_SPLIT, '"b s (n e) -> b n e s"'),
            (ATTN_MERGE, '"b n s e -> b e (n s)"'),
        ),
        "attending over channels instead of pixels",
    ),
    Mutant(
        "attn_no_output_projection",
        "self_attention",
        ((ATTN_OUT, 'out = rearrange(mixed, "b n s e -> b s (n e)")'),),
        "no output projection",
    ),
    Mutant(
        "attn_pixels_unflattened_wrongly",
        "self_attention",
        (('"b (h w) c -> b c h w", h=height', '"b (w h) c -> b c h w", h=height'),),
        "come back in a different order",
    ),
    # AttentionBlock
    Mutant(
        "ab_no_residual",
        "attention_block",
        ((ATTN_BLOCK, "return self.attention(self.norm(x))"),),
        "does not add its input back",
    ),
    Mutant(
        "ab_norm_on_residual",
        "attention_block",
        ((ATTN_BLOCK, "return self.norm(x) + self.attention(self.norm(x))"),),
        "adds the normalised input back",
    ),
    Mutant("ab_no_norm", "attention_block", ((ATTN_BLOCK, "return x + self.attention(x)"),), "sees the raw input"),
    Mutant(
        "ab_norm_with_4_groups",
        "attention_block",
        (("self.norm = GroupNorm(1, channels)", "self.norm = GroupNorm(4, channels)"),),
        "uses 4 groups",
    ),
    Mutant(
        "ab_two_heads",
        "attention_block",
        (("SelfAttention(channels, num_heads=4)", "SelfAttention(channels, num_heads=2)"),),
        "should have 4 heads",
    ),
    # ResidualBlock
    Mutant(
        "rb_step_embedding_ignored",
        "residual_block",
        (("        " + RES_EMB + "\n", ""),),
        "step embedding has no effect",
    ),
    Mutant(
        "rb_step_embedding_after_second_conv",
        "residual_block",
        ((f"{RES_EMB}\n        {RES_ROUND2}", f"{RES_ROUND2}\n        {RES_EMB}"),),
        "added after the second (conv, norm, SiLU) round",
    ),
    Mutant(
        "rb_no_residual_path", "residual_block", (("return h + self.shortcut(x)", "return h"),), "main branch alone"
    ),
    Mutant(
        "rb_always_1x1_conv",
        "residual_block",
        (("if input_channels != output_channels", "if True"),),
        "only needed when the channel count changes",
    ),
    Mutant(
        "rb_norms_not_affine",
        "residual_block",
        (
            (
                "self.norm1 = GroupNorm(groups, output_channels)",
                "self.norm1 = GroupNorm(groups, output_channels, affine=False)",
            ),
            (
                "self.norm2 = GroupNorm(groups, output_channels)",
                "self.norm2 = GroupNorm(groups, output_channels, affine=False)",
            ),
        ),
        "should be affine",
    ),
    Mutant(
        "rb_batch_norm",
        "residual_block",
        (("self.norm1 = GroupNorm(groups, output_channels)", "self.norm1 = nn.BatchNorm2d(output_channels)"),),
        "mixes the examples",
    ),
    Mutant(
        "rb_step_embedding_not_broadcast",
        "residual_block",
        ((RES_EMB, "h = h + self.step_mlp(time_emb)"),),
        "raised RuntimeError in ResidualBlock.forward",
    ),
    # DownBlock
    Mutant(
        "db_skip_after_downsampling",
        "down_block",
        ((DOWN_RETURN, "return self.down(skip), self.down(skip)"),),
        "taken after downsampling",
        {"downsample": True},
    ),
    Mutant(
        "db_outputs_swapped",
        "down_block",
        ((DOWN_RETURN, "return skip, self.down(skip)"),),
        "returned (skip, output)",
        {"downsample": True},
    ),
    Mutant(
        "db_downsample_flag_ignored",
        "down_block",
        (("self.downsample = downsample\n", "self.downsample = downsample = True\n"),),
        "with downsample=False leave out the",
        {"downsample": False},
    ),
    Mutant(
        "db_attention_unused",
        "down_block",
        (("skip = self.attention(self.res2(", "skip = (self.res2("),),
        "never used in forward",
        {"downsample": True},
    ),
    # UpBlock
    Mutant(
        "ub_skip_added",
        "up_block",
        ((UP_CAT, "h = x + skip"), (UP_RES1, "ResidualBlock(dim_out, dim_in")),
        "so it adds them",
        {"upsample": True},
    ),
    Mutant(
        "ub_skip_ignored",
        "up_block",
        ((UP_CAT, "h = x"), (UP_RES1, "ResidualBlock(dim_out, dim_in")),
        "skip input has no effect",
        {"upsample": True},
    ),
    Mutant(
        "ub_nearest_upsampling",
        "up_block",
        ((UP_CONV, 'nn.Upsample(scale_factor=2, mode="nearest") if upsample'),),
        "nearest-neighbour upsampling",
        {"upsample": True},
    ),
    Mutant(
        "ub_bilinear_upsampling",
        "up_block",
        ((UP_CONV, 'nn.Upsample(scale_factor=2, mode="bilinear") if upsample'),),
        "transposed convolution (stride 2, padding 1) is missing",
        {"upsample": True},
    ),
    Mutant(
        "ub_upsample_flag_ignored",
        "up_block",
        (("if upsample else nn.Identity()", "if True else nn.Identity()"),),
        "keeps the height and width",
        {"upsample": False},
    ),
    # MidBlock
    Mutant(
        "mb_wrong_order",
        "mid_block",
        (MID_BLOCK_ORDER[1:],),
        "it should run residual block -> attention block -> residual block",
    ),
    # Unet
    Mutant(
        "unet_ignores_num_steps",
        "unet",
        (("emb = self.step_mlp(num_steps)", "emb = self.step_mlp(t.zeros_like(num_steps))"),),
        "does not depend on num_steps",
    ),
    Mutant(
        "unet_3x3_input_conv",
        "unet",
        (("kernel_size=7, padding=3", "kernel_size=3, padding=1"),),
        "should be 7x7 with padding 3",
    ),
    Mutant(
        "unet_not_a_diffusion_model",
        "unet",
        (("class Unet(DiffusionModel):", "class Unet(nn.Module):"),),
        "must subclass DiffusionModel",
    ),
    Mutant(
        "unet_skips_first_in_first_out",
        "unet",
        (("skips.pop()", "skips.pop(0)"),),
        "raised RuntimeError in UpBlock.forward",
    ),
    Mutant(
        "unet_output_block_unused",
        "unet",
        (("return self.out_conv(self.out_block(h, emb))", "return self.out_conv(h)"),),
        "never used in forward",
    ),
    # Bonus: ConvTranspose2d
    Mutant(
        "ct_kernel_not_flipped",
        "conv_transpose2d",
        ((CONVT_KERNEL, 'kernel = rearrange(self.weight, "i o kh kw -> o i kh kw")'),),
        "wrong orientation",
    ),
    Mutant(
        "ct_conv2d_weight_layout",
        "conv_transpose2d",
        (
            (
                "t.empty(in_channels, out_channels, kernel_size, kernel_size)",
                "t.empty(out_channels, in_channels, kernel_size, kernel_size)",
            ),
            (CONVT_KERNEL, "kernel = self.weight.flip(-1, -2)"),
        ),
        "that is Conv2d's layout",
    ),
    Mutant(
        "ct_no_bias",
        "conv_transpose2d",
        (("nn.functional.conv2d(padded, kernel, self.bias)", "nn.functional.conv2d(padded, kernel)"),),
        "bias is not added",
    ),
    Mutant(
        "ct_wrong_border",
        "conv_transpose2d",
        (("border = self.kernel_size - 1 - self.padding", "border = self.padding"),),
        "(height - 1) * stride - 2 * padding + kernel_size",
    ),
)

# Mistakes that every visible test lets through, because they keep the shapes, the parameter counts
# and the behaviour those tests look at; only the grader's weights check (grader/reference.py) sees
# the numbers change.
RES_ROUND1 = "h = self.act(self.norm1(self.conv1(x)))"
RES_STEP_MLP = "self.step_mlp = nn.Sequential(SiLU(), nn.Linear(step_dim, output_channels))"
RES_LAYERS = """        self.conv1 = nn.Conv2d(input_channels, output_channels, kernel_size=3, padding=1)
        self.norm1 = GroupNorm(groups, output_channels)
        self.conv2 = nn.Conv2d(output_channels, output_channels, kernel_size=3, padding=1)
        self.norm2 = GroupNorm(groups, output_channels)
"""
DOWN_CHAIN = "skip = self.attention(self.res2(self.res1(x, step_emb), step_emb))"
UP_CHAIN = "h = self.attention(self.res2(self.res1(h, step_emb), step_emb))"
UNET_GELU = "            nn.GELU(),\n"
UNET_STEP_MLP = """        self.step_mlp = nn.Sequential(
            SinusoidalPositionEmbeddings(max_steps),
            nn.Linear(max_steps, step_dim),
            nn.GELU(),
            nn.Linear(step_dim, step_dim),
        )
"""
LAYERS_WEIGHTS = "has the lesson's layers, but with the grader's weights"

WEIGHTS_MUTANTS = (
    Mutant("res_silu_before_norm", "residual_block", ((RES_ROUND1, "h = self.norm1(self.act(self.conv1(x)))"),),
           LAYERS_WEIGHTS),
    Mutant("res_step_without_silu", "residual_block",
           ((RES_STEP_MLP, "self.step_mlp = nn.Sequential(nn.Linear(step_dim, output_channels))"),), LAYERS_WEIGHTS),
    Mutant("down_attention_between_residuals", "down_block",
           ((DOWN_CHAIN, "skip = self.res2(self.attention(self.res1(x, step_emb)), step_emb)"),),
           "residual block, residual block, attention block", {"downsample": True}),
    Mutant("up_attention_between_residuals", "up_block",
           ((UP_CHAIN, "h = self.res2(self.attention(self.res1(h, step_emb)), step_emb)"),),
           "then residual block, residual block, attention block", {"upsample": False}),
    Mutant("unet_relu_in_step_mlp", "unet", ((UNET_GELU, "            nn.ReLU(),\n"),), "Linear, GELU, Linear"),
    Mutant("unet_step_embedding_scaled", "unet",
           (("emb = self.step_mlp(num_steps)", "emb = self.step_mlp(num_steps * 2)"),), "not the sinusoidal embedding"),
)

# Correct code written another way: layers defined or used in another order, layers whose weights
# go to torch.nn.functional instead of being called, a list for a tuple. The weights check must
# accept all of them.
CORRECT_VARIANTS = (
    Mutant("res_layers_defined_backwards", "residual_block",
           ((RES_LAYERS, "\n".join(reversed(RES_LAYERS.rstrip("\n").split("\n"))) + "\n"),), ""),
    Mutant("res_step_projection_first", "residual_block",
           ((RES_ROUND1, 'step = rearrange(self.step_mlp(time_emb), "b c -> b c 1 1")\n        ' + RES_ROUND1),
            (RES_EMB, "h = h + step")), ""),
    Mutant("res_functional_conv", "residual_block",
           ((RES_ROUND1, "h = self.act(self.norm1(nn.functional.conv2d(x, self.conv1.weight, self.conv1.bias, "
                         "padding=1)))"),), ""),
    Mutant("down_returns_a_list", "down_block", ((DOWN_RETURN, "return [self.down(skip), skip]"),), "",
           {"downsample": True}),
    Mutant("unet_functional_step_mlp", "unet",
           (("emb = self.step_mlp(num_steps)",
             "first, second = self.step_mlp[1], self.step_mlp[3]\n        "
             "emb = nn.functional.linear(self.step_mlp[0](num_steps), first.weight, first.bias)\n        "
             "emb = second(nn.functional.gelu(emb))"),), ""),
    # Heads split and merged as '(e n)' throughout: a fixed permutation of the channels, so the same
    # multi-head attention with its projections' rows and columns reordered.
    Mutant("attn_heads_split_e_n", "self_attention",
           ((ATTN_SPLIT, '"b s (e n) -> b n s e"'), (ATTN_MERGE, '"b n s e -> b s (e n)"')), ""),
    # The lesson calls the even-size assert good practice, and assumes even sizes everywhere: leaving
    # it out, or asserting without downsampling, costs nothing.
    Mutant("down_without_assert", "down_block", ((DOWN_ASSERT, "pass"),), "", {"downsample": True}),
    Mutant("down_asserts_always", "down_block",
           (("if self.downsample:\n            assert", "if True:\n            assert"),), "", {"downsample": False}),
    Mutant("unet_step_mlp_defined_last", "unet",
           ((UNET_STEP_MLP, ""),
            ("        self.out_conv = nn.Conv2d(channels, image_channels, kernel_size=1)\n",
             "        self.out_conv = nn.Conv2d(channels, image_channels, kernel_size=1)\n" + UNET_STEP_MLP)), ""),
)
