"""Correct implementations of the lesson, each written differently, to show that the autograder
accepts every correct answer and not only code shaped like the reference solution.

Each module `tests/correct/<name>.py` is a complete, standalone answer to every main exercise of
W3D4 part 2. The bonus (a transposed convolution from scratch) is not part of the corpus: each
module says `ConvTranspose2d = nn.ConvTranspose2d`, as a read-only cell of the notebook does, and
its UpBlock uses that name or `nn.ConvTranspose2d`. Its docstring says how it differs.

    load(name)          the module, imported fresh
    failures(module, seed)  what the autograder would fail in a module, one line per check
    answer_cells(name)  grade_id -> what a student would type in that answer cell
    notebook(name)      the student release notebook with those answer cells filled in
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import types
from pathlib import Path

import nbformat

import checking

HERE = Path(__file__).resolve().parent

VARIANTS: tuple[str, ...] = (
    "official_fused_linear",
    "conv_fused_unflattened",
    "per_head_fused_sdpa",
    "bias_free_matmul",
    "named_ovkq",
    "lesson_contract_quartic_scale",
    "conv_separate_builtins",
    "fused_linear_bmm",
    "fused_conv_chunk_fancy",
    "hf_names_sdpa",
    "lucidrains_style",
    "no_einops_manual_softmax",
    "conv_bias_free_sdpa",
    "module_dict_unet",
    "functional_layers",
    "timm_style_tanh_swish",
    "mixed_linear_conv",
)

# The answer cells of the lesson (solutions/w3d4_part2_unet_solution.py) and the names each holds.
# The plotting cells and the bonus are answer cells too, but not part of this corpus.
CELLS: dict[str, tuple[str, ...]] = {
    "groupnorm": ("GroupNorm",),
    "sinusoidal_embeddings": ("SinusoidalPositionEmbeddings",),
    "swish": ("swish", "SiLU"),
    "self_attention": ("SelfAttention",),
    "attention_block": ("AttentionBlock",),
    "residual_block": ("ResidualBlock",),
    "down_block": ("DownBlock",),
    "up_block": ("UpBlock",),
    "mid_block": ("MidBlock",),
    "unet": ("Unet",),
}
# Given by a read-only cell of the notebook; a student does not type it.
GIVEN = "ConvTranspose2d = nn.ConvTranspose2d"


def path(name: str) -> Path:
    if name not in VARIANTS:
        raise KeyError(f"no correct variant {name!r}; known: {', '.join(VARIANTS)}")
    return HERE / f"{name}.py"


def load(name: str) -> types.ModuleType:
    """tests/correct/<name>.py imported as a new module object (never cached in sys.modules)."""
    spec = importlib.util.spec_from_file_location(f"correct_{name}", path(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        return [node.name]
    return []


def answer_cells(name: str) -> dict[str, str]:
    """grade_id -> source of that answer cell, cut from the variant's file with `ast`.

    Module-level code that is none of the exercises (imports, helpers, constants) goes at the top of
    the first answer cell, "groupnorm", so that a notebook run from the top defines it before use.
    The module docstring and the `ConvTranspose2d = nn.ConvTranspose2d` line (a read-only cell of the
    notebook) are left out."""
    source = path(name).read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    owner = {member: grade_id for grade_id, members in CELLS.items() for member in members}
    parts: dict[str, list[str]] = {grade_id: [] for grade_id in CELLS}
    prelude: list[str] = []
    previous_end = 0
    for index, node in enumerate(tree.body):
        # a statement's text runs from the end of the previous one, so comments above it come along
        # (with the blank lines above it, so that the cells keep the file's spacing)
        text = "\n".join(lines[previous_end : node.end_lineno])
        previous_end = node.end_lineno
        if index == 0 and isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant):
            continue  # the module docstring
        if ast.get_source_segment(source, node) == GIVEN:
            continue
        names = _defined_names(node)
        grade_ids = {owner[n] for n in names if n in owner}
        if grade_ids:
            parts[grade_ids.pop()].append(text)
        else:
            prelude.append(text)
    missing = [member for grade_id, members in CELLS.items() for member in members if not any(
        isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == member for node in tree.body
    )]
    if missing:
        raise ValueError(f"{name}: does not define {', '.join(missing)}")
    parts["groupnorm"][:0] = prelude
    return {grade_id: "\n".join(texts).strip("\n") + "\n" for grade_id, texts in parts.items()}


def release_notebook() -> nbformat.NotebookNode:
    from grader.grading.intake import release_notebook as read_release

    return read_release()


def notebook(name: str, release: nbformat.NotebookNode | None = None) -> nbformat.NotebookNode:
    """The student release notebook with every answer cell of the corpus replaced by the variant's
    code (the plotting cells and the bonus keep their stubs), as grader/samples.py builds its
    students."""
    answers = answer_cells(name)
    nb = copy.deepcopy(release if release is not None else release_notebook())
    filled = set()
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in answers:
            cell.source = answers[grade_id].rstrip("\n")
            filled.add(grade_id)
    if filled != set(answers):
        raise ValueError(f"the release notebook has no answer cell {sorted(set(answers) - filled)}")
    nb.metadata["w3d4"] = {"generated_from": f"tests/correct/{name}.py"}
    return nb


def all_notebooks() -> dict[str, nbformat.NotebookNode]:
    release = release_notebook()
    return {name: notebook(name, release) for name in VARIANTS}


# Every main check of the notebook (the bonus is not part of the corpus).
CALLS = [(name, kwargs) for name, kwargs in checking.CALLS if name != "conv_transpose2d"]


def failures(module: types.ModuleType, seed: int, only: tuple[str, ...] = ()) -> list[str]:
    """What the autograder decides for each check on `module` (the visible judge and, for the
    composite blocks, the numeric check on the same probe data), all run; one line per failure.
    `only`: test names to restrict to."""
    failed = []
    for name, kwargs in CALLS:
        if only and name not in only:
            continue
        data = checking.probe(module, name, kwargs, seed)
        try:
            checking.judge(data, name, kwargs, seed)
            if name in checking.WIRED:
                checking.check_weights(name, data, seed, **kwargs)
        except AssertionError as error:
            failed.append(f"{name}{kwargs or ''}: {error}")
    return failed


__all__ = ["VARIANTS", "CELLS", "CALLS", "failures", "load", "answer_cells", "notebook", "all_notebooks", "path"]
