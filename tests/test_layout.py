"""The codebase keeps the shape the README describes: short modules, no import cycles, and nothing
of the grader's own in what students get."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from grader import paths
from grader.lesson.generated import GENERATED_DIRS, GENERATED_MODULES

GRADER_ONLY = paths.GRADER / "grading"
# Notebook sources and corpora of code written as data, not modules anyone reads top to bottom.
NOT_MODULES = {lesson.source for lesson in paths.LESSONS.values()}  # lessons: prose and code, read as notebooks
MAX_LINES = 600
MAX_TESTS_MODULE_LINES = 300


FOLDERS = ("benchmarks", "checks", "figures", "grader", "solutions", "tests", "training")


def tracked_python() -> list[Path]:
    """The project's Python files (not installed packages, caches or the mermaid install)."""
    found = [p for folder in FOLDERS for p in (paths.REPO / folder).rglob("*.py")]
    return sorted(p for p in found if not {"node_modules", "__pycache__"} & set(p.parts))


def generated(path: Path) -> bool:
    relative = path.relative_to(paths.REPO)
    return any(relative.is_relative_to(folder) for folder in GENERATED_DIRS) or relative in GENERATED_MODULES


def test_the_tests_module_students_open_is_short():
    for path in (paths.TESTS_MODULE, *(paths.REPO / lesson.release_dir / paths.TESTS_MODULE.name for lesson in paths.LESSONS.values())):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= MAX_TESTS_MODULE_LINES, f"{path.name}: {lines} lines"


def test_no_module_is_over_600_lines():
    long = {}
    for path in tracked_python():
        if generated(path) or path in NOT_MODULES or not path.is_file():
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            long[path.relative_to(paths.REPO).as_posix()] = lines
    assert not long, long


def _definitions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def grader_only_names() -> set[str]:
    """What only the grader defines: the weights run and the wiring (their block formulas share the
    exercises' names, so those are left out)."""
    names = _definitions(GRADER_ONLY / "weights_run.py") | _definitions(GRADER_ONLY / "wiring.py")
    exercises = {"residual_block", "attention_block", "down_block", "up_block", "mid_block", "unet", "probe", "cases"}
    return names - exercises


def released_code(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8") for p in folder.rglob("*.py")}


def grader_code_in(code: dict[str, str]) -> list[str]:
    only = grader_only_names()
    found = []
    for name, text in code.items():
        tree = ast.parse(text)
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | _definitions_in(tree)
        found += [f"{name}: {hit}" for hit in sorted(used & only)]
    return found


def _definitions_in(tree: ast.Module) -> set[str]:
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


@pytest.mark.parametrize("assignment", list(paths.LESSONS))
def test_the_release_holds_no_grader_code(assignment):
    release = paths.REPO / paths.lesson(assignment).release_dir
    assert not [p.name for p in release.rglob("*") if p.name in ("weights_run.py", "wiring.py", "kernel_probe.py")]
    assert grader_code_in(released_code(release)) == []


def test_the_grader_code_check_can_fail():
    weights_run = (GRADER_ONLY / "weights_run.py").read_text(encoding="utf-8")
    assert grader_code_in({"copied.py": weights_run}), "a copy of the weights run would go unnoticed"
    tests_module = "from w3d4_checks import run_check\nkeys = unit_values(0, 'x', 'conv', (1,), 0)\n"
    assert grader_code_in({"w3d4_test.py": tests_module}) == ["w3d4_test.py: unit_values"]


# Import cycles -----------------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    relative = path.relative_to(paths.REPO).with_suffix("")
    parts = list(relative.parts)
    if parts[0] == "checks":
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules that `path` (module `name`) imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            # `from package import module` imports that module (the package only runs its __init__)
            submodules = [f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in known]
            targets = submodules or [module]
        else:
            continue
        found |= {target for target in targets if target in known}
    return found - {name}


def import_graph(roots: tuple[str, ...] = ("grader", "checks", "training", "figures")) -> dict[str, set[str]]:
    files = {
        _module_name(p): p
        for p in tracked_python()
        if p.is_file() and p.relative_to(paths.REPO).parts[0] in roots and not generated(p)
    }
    return {name: _imports(path, name, set(files)) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, each as the path that closes it."""
    found, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycles():
    graph = import_graph()
    assert "grader.grading.verdicts" in graph and "w3d4_checks.exercises" in graph, sorted(graph)
    assert cycles(graph) == []


def test_concerns_depend_one_way():
    """lesson -> course -> grading -> the checks library, never back."""
    order = ["grader.lesson", "grader.course", "grader.grading", "w3d4_checks"]
    for name, imported in import_graph().items():
        mine = next((i for i, prefix in enumerate(order) if name.startswith(prefix)), None)
        for target in imported:
            theirs = next((i for i, prefix in enumerate(order) if target.startswith(prefix)), None)
            if mine is not None and theirs is not None:
                assert theirs >= mine, f"{name} imports {target}"


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b", "a"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, [["b", "c", "b"]]),
    ],
)
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert cycles(graph) == expected


def library_names_used(path: Path) -> set[str]:
    """The attributes a grader-only module reads from the checks library (passed in as `checks`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.attr for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("checks", "c")
    }


def test_the_grader_uses_only_the_checks_librarys_public_api():
    import w3d4_checks

    for name in ("weights_run.py", "wiring.py"):
        used = library_names_used(GRADER_ONLY / name)
        assert used, f"{name} reads nothing from the library? (the check would be empty)"
        assert used <= set(w3d4_checks.__all__), (name, sorted(used - set(w3d4_checks.__all__)))


def test_the_public_api_check_can_fail(tmp_path: Path):
    module = tmp_path / "uses_private.py"
    module.write_text("def f(checks):\n    return checks.judging.is_close(1, 2)\n")
    assert library_names_used(module) == {"judging"}
