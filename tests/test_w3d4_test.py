"""The visible tests themselves: correct implementations pass under any seed, probes return plain
data, judges are pure and trust only the student's outputs, and the caller's state is untouched."""

from __future__ import annotations

import ast
import copy
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import alt_impl
import w3d4_checks
import w3d4_part2_unet_solution as solution
import w3d4_test
from checking import CALLS, judge, probe, seeds, subjects
from grader.lesson.samples import UNBIASED_VARIANCE
from mutants import namespace, stub_namespace

CALL_IDS = [f"{name}({', '.join(f'{k}={v}' for k, v in kwargs.items())})" for name, kwargs in CALLS]
IMPLEMENTATIONS = {"solution": solution, "alternative": alt_impl}
# Tests whose judge recomputes the exact output from regenerated inputs and parameters.
NUMERIC = ["groupnorm", "sinusoidal_embeddings", "swish", "self_attention", "attention_block", "conv_transpose2d"]
PLAIN_TYPES = (str, int, float, bool, type(None))


def assert_plain(value, where: str = "data") -> None:
    """Only dict (string keys), list, str, int, float, bool, None and plain CPU tensors."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str, f"{where} has a key of type {type(key).__name__}"
            assert_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_plain(item, f"{where}[{i}]")
    elif isinstance(value, torch.Tensor):
        assert type(value) is torch.Tensor and value.device.type == "cpu", f"{where} is not a plain CPU tensor"
    else:
        assert type(value) in PLAIN_TYPES, f"{where} is a {type(value).__name__}"


def assert_same(a, b) -> None:
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    else:
        assert a == b


def tensors_replaced(value, generator: torch.Generator):
    """The same structure with every tensor replaced by noise: a forged probe result."""
    if isinstance(value, dict):
        return {k: tensors_replaced(v, generator) for k, v in value.items()}
    if isinstance(value, list):
        return [tensors_replaced(v, generator) for v in value]
    if isinstance(value, torch.Tensor):
        return torch.randn(value.shape, generator=generator)
    return value


# Correct code passes ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", seeds(w3d4_checks.SEED, 1, 2024))
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("name, kwargs", CALLS, ids=CALL_IDS)
def test_correct_implementations_pass(name, kwargs, implementation, seed):
    summary = w3d4_checks.run_check(name, *subjects(IMPLEMENTATIONS[implementation], name), seed=seed, **kwargs)
    assert isinstance(summary, str) and summary


# Seeds on which a check of SelfAttention once failed correct code: the changed key pixel got so
# little weight from some query that float32 could not show the change ("left 1 output pixels
# unchanged"), which cost a sample student a point now and then.
FLOAT32_EDGE_SEEDS = (173, 1192, 1803, 4027, 4206, 4478, 7726, 9104, 9633, 13746, 14191, 14791, 16913, 17785,
                      18190, 19754)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.slow  # 16 seeds; seed 0 runs in every test of the attention
def test_attention_passes_where_float32_cannot_show_a_change(implementation):
    module = IMPLEMENTATIONS[implementation]
    for seed in FLOAT32_EDGE_SEEDS:
        w3d4_checks.run_check("self_attention", module.SelfAttention, seed=seed)


def test_notebook_call_prints_one_pass_line(capsys):
    w3d4_test.test_groupnorm(solution.GroupNorm, affine=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("PASS test_groupnorm(affine=True): matches torch.nn.GroupNorm")


def test_failure_names_the_test():
    mutant = namespace(("return x * t.sigmoid(x)", "return t.sigmoid(x)"), name="swish_mutant")
    with pytest.raises(AssertionError, match=r"^test_swish: swish differs"):
        w3d4_test.test_swish(mutant.swish, mutant.SiLU)


# The module and the lesson agree ---------------------------------------------------------------


def test_registry_matches_the_lesson_calls():
    source = Path(solution.__file__).read_text()
    lesson_calls = {
        (name, tuple(re.findall(r"(\w+)=(\w+)", arguments)))
        for name, arguments in re.findall(r"w3d4_test\.test_(\w+)\(([^)]*)\)", source)
    }
    registry_calls = {(name, tuple((k, str(v)) for k, v in kwargs.items())) for name, kwargs in CALLS}
    assert lesson_calls == registry_calls
    tests = [name.removeprefix("test_") for name in vars(w3d4_test) if name.startswith("test_")]
    assert tests == list(w3d4_checks.EXERCISES), "one test per exercise, in the lesson's order"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return imported | {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module and not node.level
    }


def test_checks_hold_no_solution_and_need_only_torch_and_einops():
    package = Path(w3d4_checks.__file__).parent
    for path in [Path(w3d4_test.__file__), *sorted(package.glob("*.py"))]:
        tree = ast.parse(path.read_text())
        classes = [(c.name, [ast.unparse(b) for b in c.bases]) for c in ast.walk(tree) if isinstance(c, ast.ClassDef)]
        # no layer or block of the lesson: nothing derives from nn.Module
        assert not [c for c in classes if any("Module" in base for base in c[1])], (path.name, classes)
        allowed = {"torch", "einops", "w3d4_checks", "w3d4_part1_diffusion_training_solution"} | set(sys.stdlib_module_names)
        assert _imports(path) <= allowed, (path.name, _imports(path) - allowed)


# Probes return plain data ---------------------------------------------------------------------


@pytest.mark.parametrize("name, kwargs", CALLS, ids=CALL_IDS)
def test_probes_return_plain_data_that_survives_weights_only_loading(name, kwargs):
    data = probe(solution, name, kwargs)
    assert_plain(data)
    buffer = io.BytesIO()
    torch.save(data, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert_same(loaded, data)
    judge(loaded, name, kwargs)


@pytest.mark.parametrize("name, kwargs", CALLS, ids=CALL_IDS)
def test_probes_of_broken_code_return_plain_data(name, kwargs):
    data = probe(stub_namespace(), name, kwargs)
    assert data["error"]["type"] == "NotImplementedError"
    assert_plain(data)


def test_probe_records_exceptions_instead_of_raising():
    class Broken(torch.nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()
            raise ValueError("bad channels")

    data = w3d4_checks.EXERCISES['groupnorm'].probe(Broken)
    assert data["error"]["type"] == "ValueError" and data["error"]["function"] == "Broken.__init__"
    with pytest.raises(
        AssertionError, match=r"GroupNorm raised ValueError in Broken.__init__ while building GroupNorm\(1, 8"
    ):
        w3d4_checks.EXERCISES['groupnorm'].judge(data)


@pytest.mark.parametrize("name, kwargs", CALLS, ids=CALL_IDS)
def test_probes_are_deterministic(name, kwargs):
    assert_same(probe(solution, name, kwargs), probe(solution, name, kwargs))


def test_seed_changes_the_inputs():
    first, second = (w3d4_checks.EXERCISES['groupnorm'].probe(solution.GroupNorm, seed=seed) for seed in (0, 1))
    assert not torch.equal(first["out_2"], second["out_2"])


# Judges are pure and trust only outputs -------------------------------------------------------


@pytest.mark.parametrize("name, kwargs", CALLS, ids=CALL_IDS)
def test_judges_are_pure(name, kwargs):
    data = probe(solution, name, kwargs)
    snapshot = copy.deepcopy(data)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    assert judge(data, name, kwargs) == judge(data, name, kwargs)
    assert torch.equal(torch.get_rng_state(), state)
    assert_same(data, snapshot)


def test_a_failing_verdict_is_repeatable():
    mutant = namespace(UNBIASED_VARIANCE[1:], name="unbiased")
    data = w3d4_checks.EXERCISES['groupnorm'].probe(mutant.GroupNorm, affine=False)
    messages = []
    for _ in range(2):
        with pytest.raises(AssertionError) as failure:
            w3d4_checks.EXERCISES['groupnorm'].judge(data, affine=False)
        messages.append(str(failure.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("name, kwargs", CALLS, ids=CALL_IDS)
def test_forged_outputs_fail(name, kwargs):
    forged = tensors_replaced(probe(solution, name, kwargs), torch.Generator().manual_seed(3))
    with pytest.raises(AssertionError):
        judge(forged, name, kwargs)


@pytest.mark.parametrize("name", NUMERIC)
def test_outputs_for_another_seed_fail(name):
    """The judge regenerates the inputs from its own seed, so a probe cannot choose them."""
    kwargs = dict(next(k for n, k in CALLS if n == name))
    data = probe(solution, name, kwargs, seed=1)
    with pytest.raises(AssertionError):
        judge(data, name, kwargs, seed=2)


@pytest.mark.parametrize("name, kwargs", CALLS, ids=CALL_IDS)
def test_malformed_probe_results_fail_cleanly(name, kwargs):
    with pytest.raises(AssertionError, match="malformed"):
        judge({"stage": "done"}, name, kwargs)
    with pytest.raises(AssertionError, match="not a dict"):
        judge(["not", "a", "dict"], name, kwargs)


def test_unet_is_checked_by_name_when_part_one_is_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "w3d4_part1_diffusion_training_solution", None)  # import now fails
    data = w3d4_checks.EXERCISES['unet'].probe(solution.Unet)
    assert data["is_diffusion_model"] is None
    w3d4_checks.EXERCISES['unet'].judge(data)
    data["class_names"] = ["Unet", "Module", "object"]
    with pytest.raises(AssertionError, match="must subclass DiffusionModel"):
        w3d4_checks.EXERCISES['unet'].judge(data)


# The caller's state is restored; any device works ---------------------------------------------


@pytest.mark.parametrize("name, kwargs", CALLS, ids=CALL_IDS)
def test_probes_restore_the_callers_random_state(name, kwargs):
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    probe(solution, name, kwargs)
    assert torch.equal(torch.rand(3), expected)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == tf32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("name, kwargs", CALLS, ids=CALL_IDS)
def test_passes_on_cuda(name, kwargs, implementation):
    data = probe(IMPLEMENTATIONS[implementation], name, kwargs, device="cuda")
    assert "error" not in data, data.get("error")
    assert_plain(data)
    judge(data, name, kwargs)


# An old interpreter or torch ------------------------------------------------------------------


@pytest.mark.parametrize(
    "pretend, message",
    [
        ("import sys; sys.version_info = (3, 10, 12, 'final', 0)",
         "VersionError: The W3D4 tests need Python 3.11 or newer, and this kernel runs Python 3.10.12."),
        ("import torch; torch.__version__ = '2.0.1+cpu'",
         "VersionError: The W3D4 tests need torch 2.1 or newer, and this kernel has torch 2.0.1+cpu."),
    ],
)
def test_an_old_python_or_torch_gets_one_clear_line(pretend: str, message: str):
    """What Jupyter shows (`_render_traceback_`) when the tests are imported on a kernel too old for them."""
    code = (
        f"{pretend}\n"
        "try:\n    import w3d4_test\n"
        "except ImportError as error:\n    print(error._render_traceback_())\n"
    )
    shown = subprocess.run([sys.executable, "-c", code], cwd=Path(w3d4_test.__file__).parent, capture_output=True,
                           text=True, timeout=120)
    lines = ast.literal_eval(shown.stdout.strip())
    assert len(lines) == 1 and lines[0].startswith(message), shown.stdout + shown.stderr


def test_a_kernel_new_enough_imports_the_tests():
    shown = subprocess.run([sys.executable, "-c", "import w3d4_test; print(len(w3d4_test.__dict__) > 0)"],
                           cwd=Path(w3d4_test.__file__).parent, capture_output=True, text=True, timeout=120)
    assert shown.stdout.strip() == "True", shown.stderr
