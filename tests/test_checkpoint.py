"""The shipped checkpoint fits every correct Unet, as the lesson promises: the loader pairs layers by
shape in the order a forward pass first uses them, whatever their names and order of creation, and
refuses a Unet of another shape with one message that names the first layer without a partner."""

from __future__ import annotations

import pytest
import torch as t
import torch.nn.functional as F
from einops import rearrange
from torch import nn

import correct
import training  # noqa: F401  (makes w3d4_digits importable)
import w3d4_digits as digits
import w3d4_pairing as pairing
import w3d4_part2_unet_solution as solution

pytestmark = pytest.mark.usefixtures("one_thread")

# Correct answers whose attention projections have no biases, as the lesson allows. The trained
# network's have biases, and no bias-free layer can stand in for them: a query's bias changes which
# keys it prefers. The loader refuses these by name.
WITHOUT_BIASES = ("bias_free_matmul", "conv_bias_free_sdpa", "lucidrains_style")
TOLERANCE = 2e-5  # float32 rounding between implementations (2e-6 measured); a wrong pairing is off by 0.1 or more


def fresh_unet(unet_class=solution.Unet) -> nn.Module:
    t.manual_seed(123)  # anything but the weights in the file
    return digits.build_unet(unet_class)


@pytest.fixture(scope="module")
def probe() -> tuple[t.Tensor, t.Tensor]:
    """Three images and steps that are not the checkpoint's stored ones: (3, 1, 8, 8), (3,)."""
    images = t.randn((3, *digits.UNET_CONFIG["image_shape"]), generator=t.Generator().manual_seed(7))
    return images, t.tensor([1, 37, digits.UNET_CONFIG["max_steps"]])


@pytest.fixture(scope="module")
def expected(probe) -> t.Tensor:
    """The solution's Unet with the checkpoint, on the probe."""
    model = fresh_unet()
    digits.load_checkpoint(model, verbose=False)
    with t.no_grad():
        return model(*probe)


def output_with_checkpoint(unet_class, probe) -> t.Tensor:
    model = fresh_unet(unet_class)
    info = digits.load_checkpoint(model, verbose=False)
    assert info.matches, info
    with t.no_grad():
        return model(*probe)


def test_the_stated_order_of_use_is_the_solutions():
    """CHECKPOINT_LAYERS_IN_ORDER_OF_USE, recomputed from the solution; the checkpoint's names are the
    solution's, in the order it creates them."""
    params, fingerprint, _ = digits._read_checkpoint(digits.CHECKPOINT)
    model = fresh_unet()
    assert [name for name, _ in params] == [name for name, _ in model.named_parameters()]
    created = list(dict.fromkeys(name.rpartition(".")[0] for name, _ in params))
    used = pairing.layers_in_order_of_use(model, fingerprint["input"][:1], fingerprint["steps"][:1])
    assert tuple(created.index(name) for name, _ in used) == pairing.CHECKPOINT_LAYERS_IN_ORDER_OF_USE


def test_the_order_of_use_counts_calls_that_compute_not_shapes_or_aliases():
    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.middle = nn.Linear(2, 2)
            self.last = nn.Linear(2, 2)
            self.first = nn.Parameter(t.ones(2, 2))

        def forward(self, x):
            """x: (batch, 2) -> (batch, 2)"""
            assert self.last.weight.shape == (2, 2) and self.middle.bias.device == x.device  # not uses
            transposed = self.middle.weight.T  # an alias: not a use yet
            x = x @ self.first
            x = x @ transposed  # a use of the alias is one of middle.weight
            return self.last(x) + self.middle.bias

    layers = pairing.layers_in_order_of_use(Probe(), t.ones(1, 2))
    assert [name for name, _ in layers] == ["", "middle", "last"]


@pytest.mark.parametrize("name", [name for name in correct.VARIANTS if name not in WITHOUT_BIASES])
def test_every_correct_unet_reproduces_the_solution_with_the_checkpoint(name, probe, expected):
    output = output_with_checkpoint(correct.load(name).Unet, probe)
    t.testing.assert_close(output, expected, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", WITHOUT_BIASES)
def test_a_unet_without_attention_biases_is_refused_by_name(name):
    with pytest.raises(digits.ArchitectureMismatch) as refusal:
        digits.load_checkpoint(fresh_unet(correct.load(name).Unet), verbose=False)
    message = str(refusal.value)
    assert message.count("has no partner") == 1, message
    assert "layer 15 of your forward pass" in message and "all have biases" in message, message


def test_layers_created_and_used_in_another_order_load(monkeypatch, probe, expected):
    """A residual block that creates its step projection first and uses it before its convolutions,
    and computes its shortcut before the main branch."""

    class StepFirstResidualBlock(solution.ResidualBlock):
        def __init__(self, *args):
            super().__init__(*args)
            self._modules = {"step_mlp": self._modules.pop("step_mlp"), **self._modules}

        def forward(self, x, time_emb):
            step = rearrange(self.step_mlp(time_emb), "b c -> b c 1 1")
            shortcut = self.shortcut(x)
            h = self.act(self.norm1(self.conv1(x))) + step
            return self.act(self.norm2(self.conv2(h))) + shortcut

    monkeypatch.setattr(solution, "ResidualBlock", StepFirstResidualBlock)
    t.testing.assert_close(output_with_checkpoint(solution.Unet, probe), expected, atol=TOLERANCE, rtol=0)


def test_a_unet_that_lines_up_only_by_creation_order_still_loads(monkeypatch, probe, expected):
    """Bare parameters make the attention one layer of eight tensors, which no layer of the checkpoint
    matches; created in the solution's order, they still line up one by one."""

    class BareSelfAttention(solution.SelfAttention):
        def __init__(self, channels: int, num_heads: int = 4):
            super().__init__(channels, num_heads)
            for name in ("W_Q", "W_K", "W_V", "W_O"):
                layer = self._modules.pop(name)
                self.register_parameter(f"{name}_weight", layer.weight)
                self.register_parameter(f"{name}_bias", layer.bias)

        def forward(self, x):
            """x: (batch, channels, height, width) -> same shape"""
            project = lambda name, y: F.linear(y, getattr(self, f"{name}_weight"), getattr(self, f"{name}_bias"))
            pixels = rearrange(x, "b c h w -> b (h w) c")
            q, k, v = (rearrange(project(name, pixels), "b s (n e) -> b n s e", n=self.num_heads)
                       for name in ("W_Q", "W_K", "W_V"))
            mixed = rearrange(F.scaled_dot_product_attention(q, k, v), "b n s e -> b s (n e)")
            return rearrange(project("W_O", mixed), "b (h w) c -> b c h w", h=x.shape[2])

    monkeypatch.setattr(solution, "SelfAttention", BareSelfAttention)
    t.testing.assert_close(output_with_checkpoint(solution.Unet, probe), expected, atol=TOLERANCE, rtol=0)


def test_a_wrongly_shaped_unet_gets_one_clear_message(monkeypatch):
    """A 5x5 second convolution: the message names that layer, its shape and its place in the forward
    pass, beside what the checkpoint has there."""

    class WideResidualBlock(solution.ResidualBlock):
        def __init__(self, input_channels, output_channels, step_dim, groups):
            super().__init__(input_channels, output_channels, step_dim, groups)
            self.conv2 = nn.Conv2d(output_channels, output_channels, kernel_size=5, padding=2)

    monkeypatch.setattr(solution, "ResidualBlock", WideResidualBlock)
    with pytest.raises(digits.ArchitectureMismatch) as refusal:
        digits.load_checkpoint(fresh_unet(), verbose=False)
    message = str(refusal.value)
    assert message.startswith(
        "Your Unet does not fit the checkpoint: layer 7 of your forward pass, downs.0.res1.conv2 (16, 16, 5, 5) "
        "+ (16,), has no partner: the checkpoint has no layers of that shape."
    ), message
    assert ">>   7  downs.0.res1.conv2 (16, 16, 5, 5) + (16,)" in message, message
    assert "downs.0.res1.conv2 (16, 16, 3, 3) + (16,)" in message, message
