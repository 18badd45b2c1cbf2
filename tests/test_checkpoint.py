"""The shipped checkpoint fits every correct Unet, as the lesson promises: the loader pairs layers by
shape in the order a forward pass first uses them, whatever their names and order of creation, and
refuses a Unet of another shape with one message that names the first layer without a partner.

An attention whose projections lack biases takes the weights too, as far as it can hold them: it
then computes exactly what the solution computes with the same biases taken out of the trained
network (a key bias never matters, a value bias moves into the output's bias), and the loader says
which biases it lacks."""

from __future__ import annotations

import itertools

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

# Correct answers whose attention projections lack biases, as the lesson allows: which of the
# projections "QKVO" have them. Every other correct answer has all four.
BIASES = {"bias_free_matmul": "", "conv_bias_free_sdpa": "", "lucidrains_style": "O"}
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


def output_with_checkpoint(unet_class, probe, biases: str = "QKVO") -> t.Tensor:
    """The output on the probe of unet_class with the checkpoint, whose attention has `biases`."""
    model = fresh_unet(unet_class)
    info = digits.load_checkpoint(model, verbose=False)
    assert info.biases == biases and info.as_close_as_it_can, info
    assert info.matches == (pairing.lost_biases(biases) == ""), info
    with t.no_grad():
        return model(*probe)


def solution_without(biases: str) -> nn.Module:
    """The solution with the checkpoint, whose attentions keep only the `biases` of "QKVO": a missing
    value bias goes into the output's bias (b_O + W_O b_V) if that one stays, the others become 0."""
    model = fresh_unet()
    digits.load_checkpoint(model, verbose=False)
    with t.no_grad():
        for attention in (module for module in model.modules() if isinstance(module, solution.SelfAttention)):
            if "V" not in biases and "O" in biases:
                attention.W_O.bias += attention.W_O.weight @ attention.W_V.bias
            for letter in "QKVO":
                if letter not in biases:
                    getattr(attention, f"W_{letter}").bias.zero_()
    return model


def attention_with(biases: str, scale: bool = True) -> type:
    """The solution's SelfAttention with only the `biases` of "QKVO"; without `scale`, it forgets to
    divide the scores by the square root of the head size."""

    class SelfAttention(solution.SelfAttention):
        def __init__(self, channels: int, num_heads: int = 4):
            super().__init__(channels, num_heads)
            for letter in "QKVO":
                setattr(self, f"W_{letter}", nn.Linear(channels, channels, bias=letter in biases))
            if not scale:
                self.head_size = 1

    return SelfAttention


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


@pytest.mark.parametrize("name", correct.VARIANTS)
def test_every_correct_unet_computes_what_the_solution_does_with_the_checkpoint(name, probe, expected):
    """With all biases, the trained network itself; without some, the solution without them."""
    biases = BIASES.get(name, "QKVO")
    output = output_with_checkpoint(correct.load(name).Unet, probe, biases)
    if biases != "QKVO":
        with t.no_grad():
            expected = solution_without(biases)(*probe)
    t.testing.assert_close(output, expected, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("biases", ["".join(keep) for keep in itertools.product(*("Q-", "K-", "V-", "O-"))])
def test_the_stated_expected_differences_are_the_solutions(biases):
    """EXPECTED_DIFFERENCE, recomputed: how far the solution without those biases is from the trained
    output. Without a key bias, or with the value bias folded into the output's, it is the trained
    network itself: those are exact."""
    biases = biases.replace("-", "")
    _, fingerprint, _ = digits._read_checkpoint(digits.CHECKPOINT)
    with t.no_grad():
        output = solution_without(biases)(fingerprint["input"], fingerprint["steps"])
    difference = (output - fingerprint["output"]).abs().max().item()
    assert difference == pytest.approx(pairing.expected_difference(biases), abs=1e-4)
    if pairing.lost_biases(biases) == "":
        assert difference <= digits.OUTPUT_TOLERANCE


@pytest.mark.parametrize("biases", ["QVO", "QKO", "KVO", "QKV", "QK"])
def test_an_attention_without_some_biases_holds_what_it_can(monkeypatch, probe, expected, biases):
    """Separate projections without the key bias (exact), the value bias (exact: folded into the
    output's), the query bias, the output bias, the value and output biases."""
    with t.no_grad():
        reference = solution_without(biases)(*probe) if pairing.lost_biases(biases) else expected
    monkeypatch.setattr(solution, "SelfAttention", attention_with(biases))
    t.testing.assert_close(output_with_checkpoint(solution.Unet, probe, biases), reference, atol=TOLERANCE, rtol=0)


def test_the_student_is_told_which_biases_are_missing(capsys):
    digits.load_checkpoint(fresh_unet(correct.load("lucidrains_style").Unet))
    printed = capsys.readouterr().out
    assert "Note: your attention's query, key and value projections have no bias, unlike the trained network's." in printed
    assert "The value bias was folded into your output projection's bias" in printed
    assert ("The trained query bias has no place in your network and was left out, so your network only "
            "approximates the trained one; to get the real thing, train your own with TRAIN_NOW = True.") in printed
    assert "differs from the trained network's by up to 0.079, as the lesson's own Unet does without them" in printed
    assert "WARNING" not in printed
    info = digits.load_checkpoint(fresh_unet(correct.load("bias_free_matmul").Unet), verbose=False)
    assert "The trained query, value and output biases have no place in your network" in "\n".join(info.notes)
    assert info.n_parameters == 152_305 - 4 * (16 + 32 + 32 + 16)  # the 4 biases of each attention: 16, 32, 32, 16 channels


def test_a_mistake_beside_the_missing_biases_is_still_reported(monkeypatch):
    """Unscaled attention scores: more difference than the missing biases explain."""
    monkeypatch.setattr(solution, "SelfAttention", attention_with("QKV", scale=False))
    info = digits.load_checkpoint(fresh_unet(), verbose=False)
    assert info.biases == "QKV" and not info.as_close_as_it_can, info
    assert "WARNING" in str(info) and "the missing biases explain 0.28" in str(info), info


def test_layers_without_biases_elsewhere_are_refused(monkeypatch):
    """Only the attention's projections may lack biases: a residual block's bias-free convolution
    has no partner."""

    class BiasFreeResidualBlock(solution.ResidualBlock):
        def __init__(self, input_channels, output_channels, step_dim, groups):
            super().__init__(input_channels, output_channels, step_dim, groups)
            self.conv1 = nn.Conv2d(input_channels, output_channels, kernel_size=3, padding=1, bias=False)

    monkeypatch.setattr(solution, "ResidualBlock", BiasFreeResidualBlock)
    with pytest.raises(digits.ArchitectureMismatch) as refusal:
        digits.load_checkpoint(fresh_unet(), verbose=False)
    message = str(refusal.value)
    assert message.startswith("Your Unet does not fit the checkpoint: layer 4 of your forward pass, "
                              "downs.0.res1.conv1 (16, 16, 3, 3), has no partner"), message
    assert "every layer but the attention's projections needs a bias" in message, message


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
