"""Part 3's checks: every correct variant passes on several seeds, every mutant fails its test with
its diagnosis, the stubs are "not implemented yet", and the lesson's helpers (the IDX loader, the
classifier's checksum, the loader of the student's part 2 Unet) do what they say."""

from __future__ import annotations

import gzip
import io
import json
import struct

import pytest
import torch

import w3d4_checks
import w3d4_test
from checking import seeds
from part3 import SOURCE_PATH, lesson, stubbed
from part3.corpus import PART3_MUTANTS
from part3.variants import VARIANTS
from w3d4_checks import EXERCISES, SEED, exercises_of
from w3d4_checks.evaluation import FD_CASES, SCORE_CASES, classifier_score_reference, fd_inputs, frechet_reference, score_inputs

import w3d4_classifier  # noqa: E402  (importable once `part3` has imported the training package)
import w3d4_digits
import w3d4_fashion
import w3d4_my_unet

PART3 = exercises_of("w3d4_part3")
MUTANT_SEEDS = (SEED, 7)
VARIANT_SEEDS = (SEED, 1, 7, 2024)


@pytest.fixture(scope="module")
def solution():
    return lesson(name="w3d4_part3_solution")


def run(name: str, function, seed: int = SEED) -> None:
    getattr(w3d4_test, f"test_{name}")(function, seed=seed)


def test_registry_holds_part3_in_lesson_order(solution):
    assert list(PART3) == ["frechet_distance", "classifier_score"]
    source = SOURCE_PATH.read_text()
    for name, exercise in PART3.items():
        assert f'nbgrader={{"grade_id": "{name}"}}' in source
        assert f'w3d4_test.test_{name}({", ".join(exercise.subjects)})' in source
        assert exercise.points > 0


@pytest.mark.parametrize("seed", VARIANT_SEEDS)
def test_solution_passes(solution, seed):
    run("frechet_distance", solution.frechet_distance, seed)
    run("classifier_score", solution.classifier_score, seed)


@pytest.mark.parametrize("seed", seeds(*VARIANT_SEEDS))
@pytest.mark.parametrize("variant", VARIANTS)
def test_correct_variant_passes(variant, seed):
    fd, score = VARIANTS[variant]
    run("frechet_distance", fd, seed)
    run("classifier_score", score, seed)


def test_corpora_are_large_and_named_uniquely():
    assert len(VARIANTS) >= 8
    assert len(PART3_MUTANTS) >= 25
    assert len({m.name for m in PART3_MUTANTS}) == len(PART3_MUTANTS)
    assert {m.test for m in PART3_MUTANTS} == set(PART3)


@pytest.mark.parametrize("seed", MUTANT_SEEDS)
@pytest.mark.parametrize("mutant", PART3_MUTANTS, ids=lambda m: m.name)
def test_mutant_fails_with_its_diagnosis(mutant, seed):
    module = lesson(*mutant.edits, name=f"part3_mutant_{mutant.name}")
    with pytest.raises(AssertionError) as failure:
        run(mutant.test, getattr(module, EXERCISES[mutant.test].subjects[0]), seed)
    assert mutant.message in str(failure.value), f"{mutant.name} failed with another diagnosis:\n{failure.value}"


@pytest.mark.parametrize("name", PART3)
def test_stub_is_not_implemented_yet(name):
    with pytest.raises(AssertionError, match=f"{name} is not implemented yet"):
        run(name, getattr(stubbed(), name))


# The references themselves ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", (0, 1, 2))
def test_fd_reference_agrees_with_scipy_in_float64(seed):
    scipy_fd = VARIANTS["scipy_sqrtm"][0]
    for case in FD_CASES:
        a, b = fd_inputs(seed, case)
        expected, ours = scipy_fd(a, b), frechet_reference(a, b)
        assert abs(ours - expected) <= 1e-6 * (abs(expected) + 1e-3 * (a.var(0).sum() + b.var(0).sum()).item())


def test_score_reference_bounds():
    one_hot = torch.eye(5, dtype=torch.float64).repeat(3, 1)
    assert classifier_score_reference(one_hot) == pytest.approx(5.0, rel=1e-12)
    same = torch.full((4, 5), 0.2, dtype=torch.float64)
    assert classifier_score_reference(same) == pytest.approx(1.0, rel=1e-12)
    for case in SCORE_CASES:
        assert 1 <= classifier_score_reference(score_inputs(SEED, case)) <= SCORE_CASES[case][1]


def test_probes_return_plain_data_and_judges_are_pure(solution):
    for name in PART3:
        data = PART3[name].probe(getattr(solution, name), seed=3)
        assert all(isinstance(key, str) for key in data)
        assert PART3[name].judge(data, seed=3) == PART3[name].judge(json.loads(json.dumps(data)), seed=3)


@pytest.mark.parametrize("name", PART3)
def test_probe_data_survives_weights_only_loading_and_probes_are_deterministic(solution, name):
    data = PART3[name].probe(getattr(solution, name), seed=5)
    buffer = io.BytesIO()
    torch.save(data, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded == data == PART3[name].probe(getattr(solution, name), seed=5)
    PART3[name].judge(loaded, seed=5)


@pytest.mark.parametrize("name", PART3)
def test_probes_restore_the_callers_random_state(solution, name):
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    PART3[name].probe(getattr(solution, name))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", PART3)
def test_errors_and_malformed_results_are_explained(name):
    def broken(*args):
        raise ValueError("no features")

    with pytest.raises(AssertionError, match=rf"{name} raised ValueError in \S*broken while calling {name}"):
        PART3[name].judge(PART3[name].probe(broken))
    with pytest.raises(AssertionError, match="malformed"):
        PART3[name].judge({"stage": "done"})
    with pytest.raises(AssertionError, match="not a dict"):
        PART3[name].judge(["not", "a", "dict"])


def test_forged_probe_data_fails(solution):
    data = PART3["frechet_distance"].probe(solution.frechet_distance, seed=0)
    with pytest.raises(AssertionError):
        PART3["frechet_distance"].judge(data, seed=1)  # another seed's inputs: another answer


# The shipped helpers ----------------------------------------------------------------------------


def test_classifier_checksum_is_verified_and_accuracy_reported(tmp_path):
    assert w3d4_digits.verify_sha256(w3d4_classifier.CLASSIFIER_CHECKPOINT)
    model = w3d4_classifier.load_classifier()
    assert model.record["heldout_accuracy"] >= 0.95
    _, heldout = w3d4_digits.load_digits_split()
    assert w3d4_classifier.accuracy(model, heldout, w3d4_classifier.digits_labels_split()[1]) >= 0.95
    damaged = tmp_path / w3d4_classifier.CLASSIFIER_CHECKPOINT.name
    damaged.write_bytes(w3d4_classifier.CLASSIFIER_CHECKPOINT.read_bytes()[:-1] + b"\0")
    w3d4_digits.sha256_file(damaged).write_text(w3d4_digits.sha256_file(w3d4_classifier.CLASSIFIER_CHECKPOINT).read_text())
    with pytest.raises(w3d4_digits.ChecksumError, match="damaged or was replaced"):
        w3d4_classifier.load_classifier(damaged)


def _idx(values: torch.Tensor, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{values.ndim}I", *values.shape) + bytes(values.flatten().tolist())


@pytest.mark.parametrize("compressed", (True, False))
def test_idx_files_load_through_the_real_reader(tmp_path, compressed):
    pixels = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([9, 0, 4], dtype=torch.uint8)
    for stem, raw in (("train-images-idx3-ubyte", _idx(pixels, 2051)), ("train-labels-idx1-ubyte", _idx(labels, 2049))):
        path = tmp_path / (stem + (".gz" if compressed else ""))
        path.write_bytes(gzip.compress(raw) if compressed else raw)
    images, classes = w3d4_fashion.load_fashion_mnist(tmp_path, "train")
    assert images.shape == (3, 1, 28, 28) and images.dtype == torch.float32
    torch.testing.assert_close(images[:, 0], pixels.float() / 255 * 2 - 1)
    assert classes.tolist() == [9, 0, 4]


def test_idx_errors_are_clear(tmp_path):
    with pytest.raises(w3d4_fashion.IdxError, match="is not in"):
        w3d4_fashion.load_fashion_mnist(tmp_path, "test")
    labels = _idx(torch.tensor([1, 2, 3], dtype=torch.uint8), 2049)
    (tmp_path / "wrong").write_bytes(labels)
    with pytest.raises(w3d4_fashion.IdxError, match="magic number 2049, expected 2051"):
        w3d4_fashion.read_idx(tmp_path / "wrong", 2051)
    (tmp_path / "short").write_bytes(labels[:-1])
    with pytest.raises(w3d4_fashion.IdxError, match="truncated or corrupt"):
        w3d4_fashion.read_idx(tmp_path / "short", 2049)
    (tmp_path / "broken.gz").write_bytes(gzip.compress(labels)[:-6])
    with pytest.raises(w3d4_fashion.IdxError, match="damaged gzip"):
        w3d4_fashion.read_idx(tmp_path / "broken.gz", 2049)


def _part2_notebook(path, unet_code: str | None = None):
    """A notebook like a student's part 2: the solution's cells, the Unet's answer cell optionally replaced."""
    import jupytext

    import w3d4_part2_unet_solution as part2

    notebook = jupytext.read(part2.__file__)
    if unet_code is not None:
        cell = next(c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "unet")
        cell.source = unet_code
    jupytext.write(notebook, str(path), fmt="ipynb")
    return path


def test_student_unet_is_loaded_from_a_part2_notebook(tmp_path, capsys):
    unet_class, source = w3d4_my_unet.load_my_unet(_part2_notebook(tmp_path / "part2.ipynb"))
    assert unet_class.__name__ == "Unet" and unet_class.__module__ == w3d4_my_unet.MODULE_NAME
    assert source.startswith("your Unet") and "Using your Unet" in capsys.readouterr().out


@pytest.mark.parametrize("unet_code, reason", [
    (None, "no notebook at"),
    ("class Unet:\n    def __init__(self, *args, **kwargs):\n        raise NotImplementedError()", "is not finished"),
    ("class Unet(t.nn.Module):\n    pass", "raised TypeError"),
    ("x = undefined_name", "raised NameError"),
])
def test_student_unet_falls_back_with_one_line(tmp_path, capsys, unet_code, reason):
    path = tmp_path / "missing.ipynb" if unet_code is None else _part2_notebook(tmp_path / "part2.ipynb", unet_code)
    unet_class, source = w3d4_my_unet.load_my_unet(path)
    out = capsys.readouterr().out
    assert unet_class.__name__ == "BuiltinUnet" and "reference" in source
    assert out.count("\n") == 1 and out.startswith("Using the course's Unet instead of yours") and reason in out


@pytest.mark.slow
def test_every_variant_passes_and_every_mutant_fails_on_many_seeds():
    """The checks are deterministic, but their inputs change with the grader's secret seed: correct
    code must pass, and each mistake be named, whatever the seed."""
    mutants = [(m, getattr(lesson(*m.edits, name=f"part3_mutant_{m.name}"), m.test)) for m in PART3_MUTANTS]
    for seed in range(300):
        for fd, score in VARIANTS.values():
            run("frechet_distance", fd, seed)
            run("classifier_score", score, seed)
        for mutant, function in mutants:
            with pytest.raises(AssertionError) as failure:
                run(mutant.test, function, seed)
            assert mutant.message in str(failure.value), f"{mutant.name}, seed {seed}:\n{failure.value}"


@pytest.mark.slow
def test_classifier_retrains_to_the_shipped_bytes(tmp_path):
    """`python -m training classifier` is reproducible: seeded, on one thread, nothing timed in the file."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, record = w3d4_classifier.train_classifier()
    finally:
        torch.set_num_threads(before)
    digest = w3d4_classifier.save_classifier(model, record, tmp_path / "classifier.safetensors")
    assert digest == w3d4_digits.verify_sha256(w3d4_classifier.CLASSIFIER_CHECKPOINT)
