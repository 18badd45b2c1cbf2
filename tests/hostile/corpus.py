"""A class of hostile and broken submissions, generated from the release notebook and the solution.

Every entry is the release notebook (`notebooks/w3d4_part2/`) with some answers written from the
solution (`grader/source/w3d4_part2/`, markers removed, as `grader/samples.py` does), plus an
attack or some damage. Because they are made from the current lesson, they never drift from it.
Each entry says what the grader must give it: its student id, its points per graded cell (cells
not named get 0), and a phrase that must appear in what the student is told (notes, per-test
diagnostics or the kept cell outputs).

    write_class_zip(context, path)   the whole class as one LMS-style zip (a wrapper folder, student
                                     files and folders, junk, and unsafe entries)

Resource attacks are bounded (a few hundred forks, 100 MB of output, a few GB of memory) so that
the suite stays fast with small grader limits; see tests/test_hostile.py.
"""

from __future__ import annotations

import copy
import json
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat

from grader import paths
from grader.grading import intake
from grader.lesson.samples import BLANKER, EQ_CHEAT, _solution_answers
from .attacks import (
    BACKGROUND,
    FAKE_TESTS_MODULE,
    FORK_FLOOD,
    HIDE_ERRORS,
    MEMORY_BOMB,
    OS_EXIT,
    OUTPUT_FLOOD,
    PATCH_PROBE_RUNNER,
    PATCH_TESTS_MODULE,
    PATCH_TORCH,
    PLANT_PRIVATE_MODULE,
    PROBE_FILE_FORGER,
    SINUSOIDAL_MEMORY_BOMB,
    SINUSOIDAL_SYS_EXIT,
    STUBBORN_LOOP,
    SWISH_OS_EXIT,
    SYS_EXIT,
    TMPFS_BOMB,
    network,
    read_solutions,
    write_course,
)

WRAPPER = "class_download"  # the folder an LMS download wraps everything in
HONEST_GN = {"test_groupnorm": 2.0}  # what an honest GroupNorm answer earns


@dataclass(frozen=True)
class Context:
    """What an informed attacker would know: where the repository and the course live."""

    repo: Path = paths.REPO
    course: Path = Path("/nonexistent/course")
    port: int = 9  # a TCP listener the network attacker aims at
    host_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class Entry:
    path: str  # inside the wrapper folder, or the raw zip member name when `raw` is set
    student_id: str  # the id the grader must record
    points: dict[str, float]  # graded cell -> expected points; cells not named expect 0
    reason: str  # must appear in the notes, the diagnostics or the kept outputs
    make: Callable[[Context], bytes] | None = None  # the file's bytes; None: no file of its own
    kind: str = "hostile"  # "hostile", "broken" (intake damage) or "names" (collection)
    raw: bool = False  # `path` is the zip member name as is (unsafe entries)
    symlink_to: str = ""  # the member is a symbolic link to this target


# ---------------------------------------------------------------------------------------------
# Notebooks from the lesson
# ---------------------------------------------------------------------------------------------


def release() -> nbformat.NotebookNode:
    return intake.release_notebook()


def answers() -> dict[str, str]:
    source = nbformat.read(paths.REPO / paths.SOURCE_DIR / paths.NOTEBOOK_NAME, as_version=4)
    return _solution_answers(source)


def notebook(written: dict[str, str], after: dict[str, list[str]] | None = None) -> nbformat.NotebookNode:
    """The release with `written` answer cells (grade_id -> source), and extra code cells after
    the cells named in `after` (grade_id -> sources)."""
    nb = copy.deepcopy(release())
    cells = []
    for cell in nb.cells:
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        if cell.metadata["nbgrader"]["solution"] and grade_id in written:
            cell.source = written[grade_id]
        cells.append(cell)
        for n, source in enumerate((after or {}).get(grade_id, [])):
            extra = nbformat.v4.new_code_cell(source)
            extra.id = f"extra-{grade_id}-{n}"
            cells.append(extra)
    nb.cells = cells
    return nb


def honest(*grade_ids: str, **overrides: str) -> dict[str, str]:
    """Solution answers for `grade_ids`, plus answer cells given in full."""
    solution = answers()
    return {**{g: solution[g] for g in grade_ids}, **overrides}


def to_bytes(nb) -> bytes:
    return (nbformat.writes(nb) if isinstance(nb, nbformat.NotebookNode) else json.dumps(nb, indent=1)).encode()


def code(written: dict[str, str], after: dict[str, list[str]] | None = None) -> Callable[[Context], bytes]:
    return lambda ctx: to_bytes(notebook(written, after))


def attack(snippet: Callable[[Context], str] | str, *answered: str, where: str = "groupnorm") -> Callable[[Context], bytes]:
    """Honest answers for `answered`, then `snippet` in a cell of its own after the answer `where`."""

    def make(ctx: Context) -> bytes:
        text = snippet(ctx) if callable(snippet) else snippet
        return to_bytes(notebook(honest(*answered), {where: [text.strip()]}))

    return make


# ---------------------------------------------------------------------------------------------
# Broken files (damage done by editors, LMSs and students)
# ---------------------------------------------------------------------------------------------


def _as_dict(written: dict[str, str]) -> dict:
    return json.loads(nbformat.writes(notebook(written)))


def _grade_id(cell: dict) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")


def _find(nb: dict, grade_id: str) -> dict:
    return next(c for c in nb["cells"] if _grade_id(c) == grade_id)


def deleted_cells(ctx: Context) -> bytes:
    nb = _as_dict(honest("groupnorm", "sinusoidal_embeddings"))
    nb["cells"] = [c for c in nb["cells"] if _grade_id(c) not in ("test_groupnorm", "swish", "markdown-005")]
    return to_bytes(nb)


def duplicated_cells(ctx: Context) -> bytes:
    nb = _as_dict(honest("groupnorm"))
    stub = copy.deepcopy(_find(release(), "groupnorm"))  # an old attempt left above the real one
    test = _find(nb, "test_groupnorm")
    index = nb["cells"].index(_find(nb, "groupnorm"))
    nb["cells"][index:index] = [json.loads(json.dumps(stub)), copy.deepcopy(test)]
    return to_bytes(nb)


def retyped_cells(ctx: Context) -> bytes:
    nb = _as_dict(honest("groupnorm", "sinusoidal_embeddings"))
    for grade_id, kind in (("groupnorm", "markdown"), ("sinusoidal_embeddings", "raw"), ("test_swish", "markdown")):
        cell = _find(nb, grade_id)
        cell["cell_type"] = kind
        for key in ("outputs", "execution_count"):
            cell.pop(key, None)
    return to_bytes(nb)


def reordered_cells(ctx: Context) -> bytes:
    nb = _as_dict(honest("groupnorm", "swish"))
    nb["cells"].reverse()
    return to_bytes(nb)


def changed_grade_ids(ctx: Context) -> bytes:
    nb = _as_dict(honest("groupnorm", "sinusoidal_embeddings"))
    _find(nb, "groupnorm")["metadata"]["nbgrader"]["grade_id"] = "my_groupnorm"  # found by its cell id
    sinusoidal = _find(nb, "sinusoidal_embeddings")
    sinusoidal["metadata"].pop("nbgrader")  # found by its first line
    sinusoidal["id"] = "renamed-by-an-editor"
    _find(nb, "test_groupnorm")["metadata"]["nbgrader"]["grade_id"] = "test_gn"
    return to_bytes(nb)


def edited_test_cells(ctx: Context) -> bytes:
    nb = _as_dict(honest("groupnorm"))
    test = _find(nb, "test_groupnorm")
    test["source"] = 'print("PASS")'
    test["metadata"]["nbgrader"]["points"] = 100
    _find(nb, "test_unet")["source"] = "pass"
    bonus = json.loads(json.dumps(nbformat.v4.new_code_cell('print("PASS")')))
    bonus["id"] = "free-points"
    bonus["metadata"]["nbgrader"] = {"grade": True, "grade_id": "free_points", "points": 50, "locked": True,
                                     "schema_version": 3, "solution": False, "task": False}
    nb["cells"].append(bonus)
    return to_bytes(nb)


def malformed_json(ctx: Context) -> bytes:
    text = to_bytes(notebook(honest("groupnorm")))
    return text[: len(text) // 2]


def nbformat_v3(ctx: Context) -> bytes:
    old = nbformat.convert(notebook(honest("groupnorm")), 3)
    return nbformat.writes(old, version=3).encode()


def non_utf8(ctx: Context) -> bytes:
    answer = honest("groupnorm")["groupnorm"].replace("super().__init__()", "super().__init__()  # r\u00e9sum\u00e9", 1)
    text = to_bytes(notebook({"groupnorm": answer}))
    return text.replace("\u00e9".encode(), b"\xe9")  # as a Latin-1 editor would have saved it


def oversized(ctx: Context) -> bytes:
    return to_bytes(notebook(honest("groupnorm"))) + b" " * (21 * 2**20)


def not_a_notebook(ctx: Context) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


# ---------------------------------------------------------------------------------------------
# The class
# ---------------------------------------------------------------------------------------------

STUBS = code({})

CORPUS: list[Entry] = [
    # Cheats that beat in-kernel grading.
    Entry("eq_always_true.ipynb", "eq_always_true", {"test_swish": 1.0}, "GroupNorm",
          code(honest("swish", groupnorm=EQ_CHEAT.strip()))),
    Entry("blanks_later_cells.ipynb", "blanks_later_cells", {}, "produced no result", attack(BLANKER, "groupnorm")),
    Entry("hides_errors.ipynb", "hides_errors", HONEST_GN, "not implemented yet", attack(HIDE_ERRORS, "groupnorm")),
    Entry("patches_tests_module.ipynb", "patches_tests_module", HONEST_GN, "write refused",
          attack(PATCH_TESTS_MODULE, "groupnorm")),
    Entry("patches_torch.ipynb", "patches_torch", HONEST_GN, "SelfAttention is not implemented yet",
          attack(PATCH_TORCH, "groupnorm")),
    Entry("fake_tests_module.ipynb", "fake_tests_module", HONEST_GN, "Unet is not implemented yet",
          attack(FAKE_TESTS_MODULE, "groupnorm")),
    Entry("plants_private_module.ipynb", "plants_private_module", HONEST_GN, "Unet is not implemented yet",
          attack(PLANT_PRIVATE_MODULE, "groupnorm")),
    Entry("patches_probe_runner.ipynb", "patches_probe_runner", HONEST_GN, "calls layers that differ from the lesson's",
          attack(PATCH_PROBE_RUNNER, "groupnorm")),
    Entry("reads_solutions.ipynb", "reads_solutions", {}, "could not read", attack(read_solutions)),
    Entry("writes_course.ipynb", "writes_course", {}, "write refused", attack(write_course)),
    # Crashes, hangs and floods: the honest answers before them keep their points.
    Entry("os_exit.ipynb", "os_exit", HONEST_GN, "crashed the kernel", attack(OS_EXIT, "groupnorm")),
    Entry("os_exit_in_check.ipynb", "os_exit_in_check", {"test_groupnorm": 2.0, "test_sinusoidal_embeddings": 1.0},
          "crashed your notebook's kernel", code(honest("groupnorm", "sinusoidal_embeddings", swish=SWISH_OS_EXIT.strip()))),
    Entry("sys_exit.ipynb", "sys_exit", HONEST_GN, "SystemExit",
          code(honest("groupnorm", sinusoidal=SINUSOIDAL_SYS_EXIT.strip()), {"groupnorm": [SYS_EXIT.strip()]})),
    Entry("ignores_sigterm.ipynb", "ignores_sigterm", {"test_groupnorm": 2.0, "test_sinusoidal_embeddings": 1.0},
          "ran longer than", attack(STUBBORN_LOOP, "groupnorm", "sinusoidal_embeddings")),
    Entry("memory_bomb.ipynb", "memory_bomb", HONEST_GN, "MemoryError",
          code(honest("groupnorm", sinusoidal=SINUSOIDAL_MEMORY_BOMB.strip()),
               {"groupnorm": [MEMORY_BOMB.strip(), TMPFS_BOMB.strip()]})),
    Entry("fork_flood.ipynb", "fork_flood", HONEST_GN, "fork refused", attack(FORK_FLOOD, "groupnorm")),
    Entry("background_process.ipynb", "background_process", HONEST_GN, "started background processes",
          attack(BACKGROUND, "groupnorm")),
    Entry("output_flood.ipynb", "output_flood", HONEST_GN, "output cut by the grader", attack(OUTPUT_FLOOD, "groupnorm")),
    Entry("network.ipynb", "network", HONEST_GN, "connect failed", attack(network, "groupnorm")),
    Entry("forges_probe_files.ipynb", "forges_probe_files", {}, "malformed", attack(PROBE_FILE_FORGER)),
    # Broken files.
    Entry("deleted_cells.ipynb", "deleted_cells", {"test_groupnorm": 2.0, "test_sinusoidal_embeddings": 1.0},
          "The test cell 'test_groupnorm' was missing", deleted_cells, kind="broken"),
    Entry("duplicated_cells.ipynb", "duplicated_cells", HONEST_GN, "appears 2 times", duplicated_cells, kind="broken"),
    Entry("retyped_cells.ipynb", "retyped_cells", {"test_groupnorm": 2.0, "test_sinusoidal_embeddings": 1.0},
          "turned into markdown", retyped_cells, kind="broken"),
    Entry("reordered_cells.ipynb", "reordered_cells", {"test_groupnorm": 2.0, "test_swish": 1.0},
          "order", reordered_cells, kind="broken"),
    Entry("changed_grade_ids.ipynb", "changed_grade_ids", {"test_groupnorm": 2.0, "test_sinusoidal_embeddings": 1.0},
          "lost its grading metadata", changed_grade_ids, kind="broken"),
    Entry("edited_test_cells.ipynb", "edited_test_cells", HONEST_GN, "had been edited", edited_test_cells, kind="broken"),
    Entry("malformed_json.ipynb", "malformed_json", {}, "not a valid notebook", malformed_json, kind="broken"),
    Entry("nbformat_v3.ipynb", "nbformat_v3", HONEST_GN, "nbformat 3", nbformat_v3, kind="broken"),
    Entry("non_utf8.ipynb", "non_utf8", HONEST_GN, "not valid UTF-8", non_utf8, kind="broken"),
    Entry("empty_file.ipynb", "empty_file", {}, "empty", lambda ctx: b"", kind="broken"),
    Entry("oversized.ipynb", "oversized", {}, "larger than", oversized, kind="broken"),
    # Names, folders and zip entries.
    Entry("Zo\u00eb \u00dcn\u00efc\u00f8d\u00e9 (1).ipynb", "Zoe_Unicde_1", {"test_swish": 1.0}, "recorded as student id",
          code(honest("swish")), kind="names"),
    Entry("<img src=x onerror=alert(1)>.ipynb", "img_src_x_onerror_alert_1", {}, "recorded as student id", STUBS,
          kind="names"),
    Entry("-rf --no-preserve-root.ipynb", "rf_--no-preserve-root", {}, "recorded as student id", STUBS, kind="names"),
    Entry("same name.ipynb", "same_name", {}, "recorded as student id", STUBS, kind="names"),
    Entry("same_name.ipynb", "same_name-2", HONEST_GN, "recorded as student id 'same_name-2'",
          code(honest("groupnorm")), kind="names"),
    Entry("..mallory.ipynb", "mallory", {}, "recorded as student id", STUBS, kind="names"),
    Entry("../../zipslip_zed.ipynb", "zipslip_zed", {}, "unsafe", code(honest("groupnorm")), kind="names", raw=True),
    Entry("/tmp/absolute_abe.ipynb", "absolute_abe", {}, "unsafe", code(honest("groupnorm")), kind="names", raw=True),
    Entry("link_lucy.ipynb", "link_lucy", {}, "unsafe", kind="names",
          symlink_to=str(paths.REPO / "solutions" / "w3d4_part2_unet_solution.py")),
    Entry("nested_carol/attempts/final/w3d4_part2_unet.ipynb", "nested_carol", HONEST_GN, "held 2 notebooks",
          code(honest("groupnorm")), kind="names"),
    Entry("nobody_home/readme.txt", "nobody_home", {}, "No notebook was found", lambda ctx: b"my dog ate it\n",
          kind="names"),
]

# Files that belong to a student above, or to nobody: they must not become rows of their own.
EXTRA_FILES: dict[str, bytes] = {
    "nested_carol/scratch/old_attempt.ipynb": b"",
    ".DS_Store": b"\0\0\0\1Bud1",
    "notes.txt": b"not a submission\n",
    ".ipynb_checkpoints/same_name-checkpoint.ipynb": b"{}",
}
JUNK_MEMBERS: dict[str, bytes] = {"__MACOSX/class_download/._same_name.ipynb": b"\0\5\26\7"}


def write_class_zip(ctx: Context, target: Path) -> Path:
    """The whole corpus as one zip: what an LMS hands an instructor, and worse."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for entry in CORPUS:
            name = entry.path if entry.raw else f"{WRAPPER}/{entry.path}"
            if entry.symlink_to:
                info = zipfile.ZipInfo(name)
                info.create_system = 3  # Unix, so that the mode bits below are read
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, entry.symlink_to)
            elif entry.make is not None:
                zf.writestr(name, entry.make(ctx))
        for name, data in EXTRA_FILES.items():
            zf.writestr(f"{WRAPPER}/{name}", data)
        for name, data in JUNK_MEMBERS.items():
            zf.writestr(name, data)
    return target


def by_student() -> dict[str, Entry]:
    return {entry.student_id: entry for entry in CORPUS}
