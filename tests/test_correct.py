"""Correct code written in many ways earns every point: the corpus in tests/correct passes every
visible test and the grader's numeric check, for several seeds, and, graded as notebooks by the real
command, scores the maximum."""

from __future__ import annotations

import ast
import copy
import csv
import math
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import correct
from checking import seeds
from w3d4_checks import SEED
from grader import paths
from grader.course.grade import NOTEBOOK_ID
from grader.course.workspace import Workspace
from grader.grading.verdicts import Verdict, verdict_path

SEEDS = (0, 1, 7, 123456789, 2**31 - 1)
# The answer cells of the lesson that are not part of the corpus.
NOT_IN_CORPUS = {"plot_embeddings", "plot_silu", "conv_transpose2d"}


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# The corpus itself
# ---------------------------------------------------------------------------------------------


def _attention_layers(attention: nn.Module) -> list[nn.Module]:
    return [m for m in attention.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def test_corpus_is_broad():
    assert len(correct.VARIANTS) >= 12
    assert len(set(correct.VARIANTS)) == len(correct.VARIANTS)
    channels = 8
    fused_linear, fused_conv, bias_free, separate = [], [], [], []
    for name in correct.VARIANTS:
        module = correct.load(name)
        assert module.__doc__ and module.__doc__.strip(), f"{name} has no docstring saying how it differs"
        layers = _attention_layers(module.SelfAttention(channels))
        shapes = [(type(m), tuple(m.weight.shape)) for m in layers]
        if (nn.Linear, (3 * channels, channels)) in shapes:
            fused_linear.append(name)
        if (nn.Conv2d, (3 * channels, channels, 1, 1)) in shapes:
            fused_conv.append(name)
        if any(m.bias is None for m in layers):
            bias_free.append(name)
        if sum(shape[:2] == (channels, channels) for _, shape in shapes) == 4:
            separate.append(name)
    assert fused_linear, "no variant with a fused Linear(C, 3C)"
    assert fused_conv, "no variant with a fused Conv2d(C, 3C, 1)"
    assert bias_free, "no variant with bias-free projections"
    assert separate, "no variant with four separate projections"


def _lesson_answer_cells() -> dict[str, set[str]]:
    """grade_id -> names defined, for every answer cell of the lesson source."""
    source = paths.LESSON_SOURCE.read_text(encoding="utf-8")
    cells = re.split(r"^# %%", source, flags=re.M)
    answers = {}
    for cell in cells:
        header, _, body = cell.partition("\n")
        match = re.search(r'"grade_id":\s*"([^"]+)"', header)
        if match and "### BEGIN SOLUTION" in body:
            tree = ast.parse(body)
            answers[match.group(1)] = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    return answers


def test_answer_cells_are_the_lessons():
    lesson = _lesson_answer_cells()
    assert set(correct.CELLS) == set(lesson) - NOT_IN_CORPUS
    for grade_id, names in correct.CELLS.items():
        assert set(names) == lesson[grade_id], grade_id


@pytest.mark.parametrize("name", correct.VARIANTS)
def test_answer_cells_hold_the_whole_variant(name):
    """Every top-level statement of the variant lands in exactly one answer cell."""
    cells = correct.answer_cells(name)
    assert set(cells) == set(correct.CELLS)
    for grade_id, names in correct.CELLS.items():
        tree = ast.parse(cells[grade_id])
        defined = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
        assert set(names) <= defined, (grade_id, defined)
    source = correct.path(name).read_text(encoding="utf-8")
    statements = [s for s in ast.parse(source).body[1:] if ast.get_source_segment(source, s) != correct.GIVEN]
    pasted = [s for cell in cells.values() for s in ast.parse(cell).body]
    assert sorted(ast.dump(s) for s in statements) == sorted(ast.dump(s) for s in pasted)


# ---------------------------------------------------------------------------------------------
# Every visible test and the numeric check, for several seeds
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", seeds(*SEEDS))
@pytest.mark.parametrize("variant", correct.VARIANTS)
def test_variant_passes_every_visible_test(variant, seed):
    failed = correct.failures(correct.load(variant), seed)
    assert not failed, f"{variant} (seed {seed}) fails {len(failed)} of {len(correct.CALLS)} checks:\n" + "\n".join(failed)


@pytest.mark.parametrize("variant", correct.VARIANTS)
def test_variant_passes_as_notebook_cells(variant):
    """The answer cells pasted into the release notebook and run in order (with MAIN false, so the
    test cells and the demo do nothing) define objects that pass too: the cells are complete, and
    nothing else in the notebook breaks them."""
    namespace = {"__name__": "student_notebook"}
    for index, cell in enumerate(correct.notebook(variant).cells):
        if cell.cell_type == "code":
            exec(compile(cell.source, f"<{variant} cell {index}>", "exec"), namespace)
    module = type(sys)("student_notebook")
    module.__dict__.update(namespace)
    failed = correct.failures(module, SEED)
    assert not failed, f"{variant} as notebook cells fails:\n" + "\n".join(failed)


# ---------------------------------------------------------------------------------------------
# The variants agree with torch and with each other
# ---------------------------------------------------------------------------------------------


def _sin_cos(steps: torch.Tensor, size: int) -> torch.Tensor:
    k = torch.arange(size // 2, dtype=torch.float64)
    angles = steps.double()[:, None] * 10000.0 ** (-2 * k / size)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _is_permutation_of(actual: torch.Tensor, expected: torch.Tensor, tol: float = 2e-3) -> bool:
    """Whether the columns of `actual` are those of `expected` in some order."""
    distance = (actual.double().T[:, None, :] - expected.T[None, :, :]).abs().amax(dim=-1)
    used: set[int] = set()
    for row in distance:
        free = [j for j in (row < tol).nonzero().flatten().tolist() if j not in used]
        if not free:
            return False
        used.add(free[0])
    return len(used) == expected.shape[1]


def _outside_attention_params(model: nn.Module) -> int:
    inside = {id(p) for m in model.modules() if type(m).__name__ == "SelfAttention" for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in inside)


def test_equivalence_of_variants():
    import w3d4_part2_unet_solution as solution

    generator = torch.Generator().manual_seed(0)
    config = dict(channels=8, dim_mults=(1, 2), groups=2, max_steps=20)
    reference_unet = solution.Unet((1, 8, 8), **config)
    x = torch.randn(2, 1, 8, 8, generator=generator)
    steps = torch.tensor([3, 17])
    for name in correct.VARIANTS:
        module = correct.load(name)
        # GroupNorm equals torch's, with and without the affine step, for any eps
        for groups, eps, affine in ((1, 1e-5, True), (2, 1e-5, False), (4, 1e-3, True), (8, 0.1, True)):
            inputs = 3 * torch.randn(3, 8, 4, 6, generator=generator) + torch.randn(1, 8, 1, 1, generator=generator)
            mine, torchs = module.GroupNorm(groups, 8, eps=eps, affine=affine), nn.GroupNorm(groups, 8, eps, affine)
            if affine:
                with torch.no_grad():
                    for p, q in ((mine.weight, torchs.weight), (mine.bias, torchs.bias)):
                        p.copy_(torch.randn(8, generator=generator))
                        q.copy_(p)
            with torch.no_grad():
                same = torch.allclose(mine(inputs), torchs(inputs), atol=1e-5, rtol=1e-5)
            assert same, (name, groups, eps, affine)
        # the embedding is sin and cos of steps * 1/10000^(2k/d) in one of the layouts
        random_steps = torch.randint(1, 1000, (20,), generator=generator)
        embedding_steps = torch.cat([torch.zeros(1, dtype=torch.long), random_steps])
        for size in (16, 10, 128):
            out = module.SinusoidalPositionEmbeddings(size)(embedding_steps)
            assert out.shape == (21, size) and _is_permutation_of(out, _sin_cos(embedding_steps, size)), (name, size)
        swish_in = torch.linspace(-100, 100, 2001)
        assert torch.allclose(module.swish(swish_in), F.silu(swish_in), atol=1e-6), name
        # a working Unet with the diagrams' layers: outside the attention, the reference's parameter count
        unet = module.Unet((1, 8, 8), **config)
        with torch.no_grad():
            out = unet(x, steps)
        assert out.shape == (2, 1, 8, 8) and torch.isfinite(out).all(), name
        assert _outside_attention_params(unet) == _outside_attention_params(reference_unet), name
        attention = sum(p.numel() for p in module.SelfAttention(8).parameters())
        assert attention in range(4 * 8 * 8, 4 * 8 * 8 + 4 * 8 + 1), (name, attention)


# ---------------------------------------------------------------------------------------------
# Through the real grader, as one class
# ---------------------------------------------------------------------------------------------


def _grade(submissions: Path, out: Path) -> subprocess.CompletedProcess:
    from grader.course.commands import tool_env

    return subprocess.run(
        [sys.executable, "-m", "grader", "grade", str(submissions), "--out", str(out), "--jobs", "2"],
        cwd=paths.REPO, env=tool_env(), capture_output=True, text=True, timeout=3600,
    )


WRONG_BONUS = """
class ConvTranspose2dFromScratch(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.weight = nn.Parameter(t.zeros(in_channels, out_channels, kernel_size, kernel_size))

    def forward(self, x):
        return x  # wrong: not even the right shape
"""


def _with_bonus(nb: nbformat.NotebookNode, source: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "conv_transpose2d")
    cell.source = source.strip()
    return nb


@pytest.mark.slow
def test_correct_corpus_earns_every_point_through_the_grader(tmp_path: Path):
    submissions = tmp_path / "class"
    submissions.mkdir()
    notebooks = correct.all_notebooks()
    # A wrong bonus, and one the student opts out of after writing it, must not cost a point.
    notebooks["official_fused_linear_wrong_bonus"] = _with_bonus(notebooks["official_fused_linear"], WRONG_BONUS)
    for name, nb in notebooks.items():
        with open(submissions / f"{name}.ipynb", "w", encoding="utf-8", newline="\n") as f:
            nbformat.write(nb, f)
    out = tmp_path / "out"
    result = _grade(submissions, out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(out / paths.ASSIGNMENT / "grades_by_test.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    totals: dict[str, list[float]] = {}
    lost = []
    for row in rows:
        score, max_score = float(row["final_score"]), float(row["max_score"])
        earned, available = totals.setdefault(row["student_id"], [0.0, 0.0])
        totals[row["student_id"]] = [earned + score, available + max_score]
        if not math.isclose(score, max_score):
            lost.append(f"{row['student_id']} {row['test']}: {score:g}/{max_score:g}: {row['diagnostic']}")
    assert set(totals) == set(notebooks), sorted(totals)
    assert all(available == 16 for _, available in totals.values()), totals
    assert not lost, "correct code lost points:\n" + "\n".join(lost) + "\n" + result.stdout[-2000:]
    verdicts = {name: Verdict.load(verdict_path(Workspace(out).verdicts, name, paths.ASSIGNMENT, NOTEBOOK_ID))
                for name in notebooks}
    assert {name: v.flags for name, v in verdicts.items() if v.flags} == {}, "correct code got integrity flags"
