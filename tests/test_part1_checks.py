"""Part 1's checks: correct code written in many ways earns every point, every mistake of the corpus
fails its test with its diagnosis, stubs say "not implemented yet", the statistical checks pass a
correct answer on hundreds of seeds, and the module part 2 imports is the lesson's code."""

from __future__ import annotations

import ast
import copy
import inspect
import io
import json
import re

import pytest
import torch

import part1
import w3d4_part1_diffusion_training_solution as module
from checking import seeds
from part1.mistakes import MISTAKES
from w3d4_checks import EXERCISES, SEED

SEEDS = (SEED, 1, 7, 2024, 2**31 - 1)
STATISTICAL = ("q_eq2", "q_eq4", "noise_img", "train_loop", "ddpm_sample")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def solution():
    return part1.lesson(name="part1_solution")


# The corpora -----------------------------------------------------------------------------------


def test_corpora_are_large_and_named_once():
    assert len(part1.VARIANTS) >= 8 and len(set(part1.VARIANTS)) == len(part1.VARIANTS)
    assert len(MISTAKES) >= 25 and len({m.name for m in MISTAKES}) == len(MISTAKES)
    assert {m.test for m in MISTAKES} == set(part1.PART1), "every exercise has mistakes that it must catch"
    for name in part1.VARIANTS:
        assert (part1.load(name).__doc__ or "").strip(), f"{name} has no docstring saying how it differs"


@pytest.mark.parametrize("seed", seeds(*SEEDS))
@pytest.mark.parametrize("variant", part1.VARIANTS)
def test_variant_passes_every_test(variant, seed):
    module_ = part1.load(variant)
    for exercise in part1.PART1:
        part1.run(module_, exercise, seed)


@pytest.mark.parametrize("seed", seeds(*SEEDS))
def test_the_lesson_passes_every_test(solution, seed):
    for exercise in part1.PART1:
        part1.run(solution, exercise, seed)


@pytest.mark.parametrize("seed", seeds(SEED, 7))
@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.name)
def test_mistake_fails_with_its_diagnosis(mistake, seed):
    wrong = part1.lesson(*mistake.edits, name=f"part1_{mistake.name}")
    with pytest.raises(AssertionError) as failure:
        part1.run(wrong, mistake.test, seed)
    assert str(failure.value).startswith(f"test_{mistake.test}")
    assert mistake.message in str(failure.value), f"{mistake.name} failed with another diagnosis:\n{failure.value}"


@pytest.mark.parametrize("exercise", part1.PART1)
def test_every_stub_is_not_implemented_yet(exercise):
    with pytest.raises(AssertionError, match="is not implemented yet"):
        part1.run(part1.stubs(), exercise)


@pytest.mark.parametrize(
    "stubbed, exercise, who",
    [
        ({"denormalize_img"}, "normalize_img", "denormalize_img"),
        ({"NoiseSchedule._lookup"}, "noise_schedule", "NoiseSchedule"),
        ({"NoiseSchedule.__init__"}, "noise_img", r"NoiseSchedule is not implemented yet \(noise_img uses it\)"),
        ({"TinyDiffuser.forward"}, "tiny_diffuser", "TinyDiffuser"),
        ({"train"}, "train_loop", "train"),
        ({"noise_img"}, "train_loop", r"noise_img is not implemented yet \(train uses it\)"),
        ({"sample"}, "ddpm_sample", "sample"),
    ],
)
def test_a_stub_is_named(stubbed, exercise, who):
    with pytest.raises(AssertionError, match=who if "(" in who else f"{who} is not implemented yet"):
        part1.run(part1.stubs(stubbed), exercise)


# The checks' contract: plain data, pure judges, restored random state ----------------------------


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, torch.Tensor):
        return type(value) is torch.Tensor and value.device.type == "cpu"
    return type(value) in (str, int, float, bool, type(None))


def _probe(solution, exercise: str, seed: int = SEED) -> dict:
    subjects = [getattr(solution, name) for name in EXERCISES[exercise].subjects]
    return EXERCISES[exercise].probe(*subjects, seed=seed)


@pytest.mark.parametrize("exercise", part1.PART1)
def test_probe_data_is_plain_and_judges_are_pure(solution, exercise):
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    data = _probe(solution, exercise)
    assert torch.equal(torch.rand(3), expected), "the probe must restore the caller's random state"
    assert _plain(data) and "error" not in data
    buffer = io.BytesIO()
    torch.save(data, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    snapshot = copy.deepcopy(loaded)
    judge = EXERCISES[exercise].judge
    assert judge(loaded, seed=SEED) == judge(loaded, seed=SEED)
    assert repr(snapshot) == repr(loaded)
    assert _probe(solution, exercise).keys() == data.keys()


@pytest.mark.parametrize("exercise", part1.PART1)
def test_malformed_and_forged_results_fail(solution, exercise):
    judge = EXERCISES[exercise].judge
    with pytest.raises(AssertionError, match="malformed"):
        judge({"stage": "done"}, seed=SEED)
    data = _probe(solution, exercise)
    generator = torch.Generator().manual_seed(3)

    def forge(value):
        if isinstance(value, dict):
            return {k: forge(v) for k, v in value.items()}
        if isinstance(value, list):
            return [forge(v) for v in value]
        if isinstance(value, torch.Tensor):
            return torch.randn(value.shape, generator=generator).to(value.dtype) if value.is_floating_point() else value
        return value

    with pytest.raises(AssertionError):
        judge(forge(data), seed=SEED)


@pytest.mark.slow
@pytest.mark.parametrize("exercise", STATISTICAL)
def test_statistical_checks_pass_correct_code_on_300_seeds(solution, exercise):
    """A tolerance of 6 standard errors: no seed of 300 may fail the lesson, nor the posterior-variance sampler."""
    posterior = part1.load("posterior_variance_gather")
    for seed in range(1000, 1300):
        part1.run(solution, exercise, seed)
        if exercise == "ddpm_sample":
            part1.run(posterior, exercise, seed)


@pytest.mark.slow
@pytest.mark.parametrize("mistake", [m for m in MISTAKES if m.test in STATISTICAL], ids=lambda m: m.name)
def test_statistical_mistakes_keep_their_diagnosis_on_30_seeds(mistake):
    """The grader draws a seed per student: a mistake judged by distribution must be named on any seed."""
    wrong = part1.lesson(*mistake.edits, name=f"part1_{mistake.name}")
    for seed in range(2000, 2030):
        with pytest.raises(AssertionError, match=re.escape(mistake.message)):
            part1.run(wrong, mistake.test, seed)


# The lesson and the registry agree ------------------------------------------------------------


def _cells(source: str) -> list[tuple[str, str]]:
    return [(chunk.partition("\n")[0], chunk.partition("\n")[2]) for chunk in re.split(r"^(?=# %%)", source, flags=re.M)
            if chunk.startswith("# %%")]


def test_test_cells_match_the_registry():
    found = {}
    for header, body in _cells(part1.SOURCE_PATH.read_text(encoding="utf-8")):
        match = re.search(r"nbgrader=(\{.*\})", header)
        if match and json.loads(match.group(1))["grade_id"].startswith("test_"):
            meta = json.loads(match.group(1))
            calls = re.findall(r"w3d4_test\.test_(\w+)\(([^)]*)\)", body)
            assert len(calls) == 1 and body.strip().startswith("if MAIN:"), header
            name, arguments = calls[0]
            assert meta["grade_id"] == f"test_{name}"
            assert [a.strip() for a in arguments.split(",")] == list(EXERCISES[name].subjects)
            found[name] = meta["points"]
    assert list(found) == list(part1.PART1)
    assert found == {name: EXERCISES[name].points for name in part1.PART1}
    assert sum(found.values()) == 15


# The module part 2 imports is the lesson's code ---------------------------------------------------


def generated_statements(source: str) -> list[str]:
    """The rule: code cells in order, without graded test cells, skip-when-grading cells and cells that
    start with `if MAIN`, solution markers removed. Returns each statement's ast dump."""
    kept = []
    for header, body in _cells(source):
        if "[markdown]" in header or "skip-when-grading" in header:
            continue
        match = re.search(r"nbgrader=(\{.*\})", header)
        if match and json.loads(match.group(1))["grade_id"].startswith("test_"):
            continue
        tree = ast.parse(body)
        if tree.body and isinstance(tree.body[0], ast.If) and ast.unparse(tree.body[0].test).startswith("MAIN"):
            continue
        kept += [ast.dump(node) for node in tree.body]
    return kept


def test_the_module_is_generated_from_the_lesson():
    source = inspect.getsource(module)
    body = ast.parse(source).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the generated header's docstring
    assert [ast.dump(node) for node in body] == generated_statements(part1.SOURCE_PATH.read_text(encoding="utf-8")), (
        "solutions/w3d4_part1_diffusion_training_solution.py is stale: generate it again from the lesson")


def test_the_module_has_the_api_part_two_uses():
    assert (module.BETA_START, module.BETA_END) == (1e-4, 0.02) and "w3d4_test" not in vars(module)
    schedule = module.NoiseSchedule(5)
    assert {name for name, _ in schedule.named_buffers()} == {"betas", "alphas", "alpha_bars"} and len(schedule) == 5
    assert "max_steps=5" in repr(schedule)
    assert torch.allclose(schedule.alpha_bar(torch.tensor([1, 5])), torch.cumprod(1 - torch.linspace(1e-4, 0.02, 5), 0)[[0, 4]])
    with pytest.raises(IndexError, match=r"num_steps must lie in 1\.\.5, got \[0\]"):
        schedule.alpha_bar(torch.tensor([0]))
    assert inspect.isabstract(module.DiffusionModel)
    config = module.TrainConfig()
    assert (config.epochs, config.batch_size, config.lr, config.max_steps, config.seed, config.time_budget_s) == (
        10, 128, 1e-3, 1000, 0, None)
    images = torch.rand(4, 1, 2, 3) * 2 - 1
    steps, noise, noised = module.noise_img(images, schedule)
    assert steps.dtype == torch.int64 and torch.allclose(module.reconstruct(noised, noise, steps, schedule), images, atol=1e-4)
    model = module.TinyDiffuser((1, 2, 3), hidden_size=8, max_steps=5)
    log = module.train(model, images, module.TrainConfig(epochs=2, batch_size=2, max_steps=5))
    assert isinstance(log, module.TrainLog) and len(log.losses) == 4 and model.noise_schedule is not None
    first, second = (module.sample(model, 3, seed=11) for _ in range(2))
    assert torch.equal(first, second) and len(module.sample(model, 3, return_all_steps=True, seed=11)) == 6
    for name in ("DiffusionModel", "NoiseSchedule", "TrainConfig", "TrainLog", "reconstruct", "sample", "show_images",
                 "train", "noise_img", "BETA_START", "BETA_END", "Device"):
        assert hasattr(module, name), name


def test_tensors_on_two_devices_get_a_device_hint():
    """Only a GPU shows it; the probe records the error as plain data, as a GPU run would."""
    data = {"stage": "calling noise_img(img, NoiseSchedule(50)) with img of shape (3000, 1, 4, 6)", "error": {
        "type": "RuntimeError", "origin": "noise_img", "function": "noise_img", "code": "noised = alpha_bar * img",
        "message": "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!"}}
    with pytest.raises(AssertionError, match=r"noise_img raised RuntimeError in noise_img(.|\n)*device=img.device"):
        EXERCISES["noise_img"].judge(data, seed=SEED)
