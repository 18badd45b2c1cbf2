"""The "Does it work?" demo: the shipped checkpoint, the loader, training, the quality measure, the command.

The checkpoint is `training/w3d4_unet_digits.safetensors`, written by `python -m training`; the
lesson loads it into the student's own Unet, so the loader must take any Unet that follows the
diagrams and refuse, by name, one that does not.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
import torch as t
from torch import nn

import training  # noqa: F401  (makes w3d4_digits and builtin_unet importable)
import w3d4_digits as digits
import w3d4_part2_unet_solution as solution
from builtin_unet import BuiltinUnet
from grader import paths

CHECKPOINT = digits.CHECKPOINT


@pytest.fixture(scope="module")
def split():
    return digits.load_digits_split()


def fresh_unet(unet_class=solution.Unet, **overrides) -> nn.Module:
    t.manual_seed(123)  # anything but the weights in the file
    return digits.build_unet(unet_class, **overrides)


# --- the file ---------------------------------------------------------------------------------


def test_checkpoint_is_shipped_small_float16_and_matches_its_sha256():
    recorded = digits.sha256_file(CHECKPOINT).read_text(encoding="utf-8").split()
    assert recorded[1] == CHECKPOINT.name
    assert digits.verify_sha256(CHECKPOINT) == recorded[0] == digits.sha256_of(CHECKPOINT)
    assert CHECKPOINT.stat().st_size < 1_000_000
    params, _, metadata = digits._read_checkpoint(CHECKPOINT)
    assert params and all(value.dtype == t.float16 for _, value in params)
    assert metadata["format"] == digits.FORMAT


def test_release_ships_the_same_checkpoint_and_module():
    for folder in (paths.SOURCE_DIR, paths.RELEASE_DIR):
        shipped = paths.REPO / folder
        for name in (CHECKPOINT.name, digits.sha256_file(CHECKPOINT).name):
            assert (shipped / name).read_bytes() == (CHECKPOINT.parent / name).read_bytes(), f"{folder}/{name}"
        assert (shipped / "w3d4_digits.py").read_text(encoding="utf-8").endswith(paths.DIGITS_MODULE.read_text(encoding="utf-8"))


def test_a_tampered_checkpoint_is_refused(tmp_path):
    copy = tmp_path / CHECKPOINT.name
    data = bytearray(CHECKPOINT.read_bytes())
    data[-100] ^= 1  # one bit of one weight
    copy.write_bytes(bytes(data))
    digits.sha256_file(copy).write_bytes(digits.sha256_file(CHECKPOINT).read_bytes())
    with pytest.raises(digits.ChecksumError, match="damaged or was replaced"):
        digits.load_checkpoint(fresh_unet(), copy, verbose=False)
    digits.sha256_file(copy).unlink()
    with pytest.raises(digits.ChecksumError, match="missing"):
        digits.verify_sha256(copy)


# --- loading into different Unets -------------------------------------------------------------


def test_loading_into_the_solution_reproduces_the_trained_output():
    model = fresh_unet()
    info = digits.load_checkpoint(model, verbose=False)
    assert info.matches and info.max_difference <= digits.OUTPUT_TOLERANCE, info
    assert info.notes == []
    assert len(info.losses) == info.train_config["epochs"] * 13
    assert model.noise_schedule is not None and len(model.noise_schedule) == digits.UNET_CONFIG["max_steps"]
    _, fingerprint, _ = digits._read_checkpoint(CHECKPOINT)
    with t.no_grad():
        output = model(fingerprint["input"], fingerprint["steps"])
    t.testing.assert_close(output, fingerprint["output"], atol=digits.OUTPUT_TOLERANCE, rtol=0)


def test_loading_into_the_builtin_unet_reproduces_the_trained_output():
    """The same architecture from torch's own layers: the benchmark's comparison is like for like."""
    info = digits.load_checkpoint(fresh_unet(BuiltinUnet), verbose=False)
    assert info.matches, info


def concatenated_embeddings() -> type:
    """The lesson's embedding with all the sines first, then all the cosines: the other order the
    lesson allows. (The loader finds the embedding by its class name, as a student's is called.)"""

    class SinusoidalPositionEmbeddings(solution.SinusoidalPositionEmbeddings):
        def forward(self, x: t.Tensor) -> t.Tensor:
            angles = t.outer(x.float(), self.frequencies)
            return t.cat([angles.sin(), angles.cos()], dim=-1)

    return SinusoidalPositionEmbeddings


def test_an_embedding_in_another_order_is_reordered(monkeypatch):
    embeddings = concatenated_embeddings()
    monkeypatch.setattr(solution, "SinusoidalPositionEmbeddings", embeddings)
    model = fresh_unet()
    assert isinstance(model.step_mlp[0], embeddings)
    info = digits.load_checkpoint(model, verbose=False)
    assert info.matches, info
    assert any("orders its channels differently" in note for note in info.notes)


def test_the_second_implementation_lines_up_but_computes_something_else():
    """tests/alt_impl.py has the diagrams' layers, so the weights fit (its up blocks concatenate the
    skip first, which the loader allows for); but its embedding uses other frequencies, so the loader
    must say that this network does not reproduce the trained one."""
    import alt_impl

    info = digits.load_checkpoint(fresh_unet(alt_impl.Unet), verbose=False)
    assert not info.matches
    assert any("not a reordering" in note for note in info.notes)
    assert "WARNING" in str(info) and "step embedding's frequencies" in str(info)


def test_a_different_architecture_is_refused_by_name():
    """Twice the channels: the first layer the forward pass uses already has no partner.
    (tests/test_checkpoint.py has more: every correct Unet loads, others are refused.)"""
    refusal = r"layer 1 of your forward pass, step_mlp\.1 \(128, 200\) \+ \(128,\), has no partner"
    with pytest.raises(digits.ArchitectureMismatch, match=refusal):
        digits.load_checkpoint(fresh_unet(channels=32), verbose=False)


def test_an_unfinished_unet_gets_a_message_not_a_traceback(capsys, split):
    class StubUnet(solution.Unet):
        def __init__(self, *args, **kwargs):
            raise NotImplementedError()

    model, losses = digits.prepare_unet(StubUnet, split[0])
    assert (model, losses) == (None, [])
    assert "StubUnet.__init__` is not implemented yet" in capsys.readouterr().out


# --- training and the quality measure ---------------------------------------------------------


@pytest.mark.slow  # trains twice
def test_training_is_seeded(split):
    config = replace(digits.TRAIN_CONFIG, epochs=2, batch_size=32, seed=3)
    runs = []
    for _ in range(2):
        t.manual_seed(0)
        model = digits.build_unet(solution.Unet, channels=8)
        runs.append((digits.train_digits(model, split[0][:128], config, progress=False).losses, model))
    (losses, model), (again, other) = runs
    assert len(losses) == 2 * 4
    assert losses == again, "the same seed must give the same losses"
    assert all(t.equal(a, b) for a, b in zip(model.parameters(), other.parameters()))


@pytest.mark.slow  # trains
def test_a_few_steps_lower_the_loss(split):
    t.manual_seed(0)
    model = digits.build_unet(solution.Unet)
    config = replace(digits.TRAIN_CONFIG, epochs=4, batch_size=32, seed=3)
    losses = digits.train_digits(model, split[0][:256], config, progress=False).losses
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, f"the loss went from {first:.3f} to {last:.3f} in {len(losses)} steps"


def test_quality_measure_tells_digits_from_noise(split):
    trainset, heldout = split
    noise = digits.clipped_noise(len(heldout))
    quality = digits.measure_quality(heldout, noise, trainset, heldout)
    assert quality.samples == quality.held_out and quality.ratio == 1
    assert quality.held_out < 0.5 * quality.noise, quality
    assert quality.untrained == pytest.approx(quality.noise)
    copied = digits.nearest_neighbour_distance(trainset[:50], trainset)
    assert copied == 0, "a training image is its own nearest neighbour"


@pytest.mark.slow  # samples 200 denoising steps
def test_shipped_weights_draw_digits(split):
    """The recorded quality of the shipped weights meets the demo's goal, and a few fresh samples
    from them sit near the digits."""
    trainset, heldout = split
    info = digits.load_checkpoint(model := fresh_unet(), verbose=False)
    recorded = digits.Quality(**info.record["quality"])
    assert recorded.ratio <= 1.5 and recorded.samples < 0.5 * recorded.noise, recorded
    samples = digits.sample_digits(model, 16)
    assert digits.nearest_neighbour_distance(samples, trainset) < 0.5 * recorded.noise


# --- the command ------------------------------------------------------------------------------


def test_training_command_help():
    result = subprocess.run([sys.executable, "-m", "training", "--help"], cwd=paths.REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for option in ("--epochs", "--seed", "--out", "--figures", "--device"):
        assert option in result.stdout
