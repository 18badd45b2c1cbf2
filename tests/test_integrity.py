"""Integrity flags (grader/grading/integrity.py), from sandbox results built by hand: each attack's
signal gives its one line, and no honest mistake gives any. Also the two recorders the flags read:
the checks' note of outputs that redefine comparisons, and the kernel's audit hook
(grader/grading/sandbox/kernel_audit.py), driven here without a kernel."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from torch import nn

from grader import paths
from grader.grading import integrity, intake
from grader.grading.plan import checks_for
from grader.grading.sandbox import Limits, SandboxResult
from grader.grading.sandbox import kernel_audit
from grader.grading.verdicts import CheckResult, Verdict

FOLDER = "/tmp/w3d4-sb-abc/job"
CHECKS = checks_for(nbformat.read(paths.REPO / paths.RELEASE_DIR / paths.NOTEBOOK_NAME, as_version=4))
ALWAYS_EQUAL = {"type": "_AlwaysEqual", "tensor": True, "redefines": ["__bool__", "__eq__", "__ne__"]}


def result(probes: dict | None = None, ran: bool = True, **fields) -> SandboxResult:
    """A run that went to the end: every probe's cell ran "ok" and wrote what `probes` says (by
    default, an honest result with the probe's data)."""
    if probes is None:
        probes = {c.check_id: {"ok": True, "data": {"stage": "done", "out": torch.zeros(2)}, "unusual": []}
                  for c in CHECKS}
    status = {c.check_id: "ok" for c in CHECKS} if ran else {}
    return SandboxResult(isolation="bubblewrap", seconds=1.0, timed_out=False, probes=probes,
                         probe_status=status, folder=FOLDER, **fields)


def error_cell(ename: str, evalue: str, index: int = 12) -> dict:
    return {"index": index, "status": "error", "outputs": [{"output_type": "error", "ename": ename, "evalue": evalue,
                                                            "traceback": []}]}


def access(event: str, path: str, resolved: str | None = None, **extra) -> dict:
    return {"event": event, "path": path, "resolved": resolved or path, **extra}


# ---------------------------------------------------------------------------------------------
# Honest runs: no flag
# ---------------------------------------------------------------------------------------------


def test_an_honest_run_is_not_flagged():
    assert integrity.flags(result(), CHECKS) == []


def test_an_untouched_notebook_is_not_flagged():
    probes = {c.check_id: {"ok": False, "error": "GroupNorm is not implemented yet", "unusual": []} for c in CHECKS}
    cells = [error_cell("NotImplementedError", "", i) for i in (12, 17, 42)]
    assert integrity.flags(result(probes, cells=cells), CHECKS) == []


@pytest.mark.parametrize("data", [
    {"stage": "done", "out": "a tuple of length 2"},  # a tuple where a tensor was due: the probe says so in data
    {"stage": "running GroupNorm", "error": {"type": "RuntimeError", "message": "shape mismatch"}},
    {"stage": "done", "out": torch.full((2,), float("nan"))},
])
def test_honest_mistakes_in_the_data_are_not_flagged(data):
    probes = {c.check_id: {"ok": True, "data": data, "unusual": []} for c in CHECKS}
    assert integrity.flags(result(probes), CHECKS) == []


def test_an_unreadable_result_is_not_flagged():
    """A kernel killed while writing, or a huge honest output, leaves one too."""
    probes = {c.check_id: {"ok": False, "error": "unreadable probe result (ValueError)"} for c in CHECKS}
    assert integrity.flags(result(probes), CHECKS) == []


def test_probes_missing_because_the_run_stopped_early_are_not_flagged():
    """A timeout or a kernel that died too often stops the run before the probes: no probe ran."""
    assert integrity.flags(result({}, ran=False), CHECKS) == []
    died = result({CHECKS[0].check_id: {"ok": False, "error": "The check crashed your notebook's kernel."}})
    died.probe_status = {CHECKS[0].check_id: "died"}  # the rest never ran: the kernel was given up on
    assert integrity.flags(died, CHECKS) == []


def test_a_run_the_grader_could_not_start_is_not_flagged():
    assert integrity.flags(SandboxResult(isolation="unknown", seconds=0.0, timed_out=False), CHECKS) == []


@pytest.mark.parametrize("records", [
    [access("open", "/home/alice/data.csv")],  # a path of the student's own machine
    [access("os.listdir", "/content/drive/MyDrive")],  # Colab
    [access("glob.glob/2", "../data/*.csv", "/tmp/w3d4-sb-abc/data/*.csv")],
    [access("open", "/tmp/fig.png")],
    [access("open", "/data/high_resolution/img.png")],  # "resolution" is no "solution"
    [access("open", "../w3d4_part1/w3d4_part1_diffusion_training_solution.py",
            "/tmp/w3d4-sb-abc/w3d4_part1/w3d4_part1_diffusion_training_solution.py")],  # part 1's released module
    [access("open", FOLDER + "/solution_notes.txt")],  # inside the folder
    [access("subprocess.Popen", "/content", command="ls /content")],
    [access("open", "../data.csv", "/tmp/w3d4-sb-abc/data.csv")],

    [{"event": "open"}, {"path": 3}, "not a record"],  # garbage in the log
])
def test_honest_reaches_outside_the_folder_are_not_flagged(records):
    records = [r for r in records if isinstance(r, dict)]
    assert integrity.flags(result(accesses=records), CHECKS) == []


def test_the_names_of_the_folders_own_ancestors_do_not_count():
    """A grader whose scratch folder lives under /home/grader: the student's `../data.csv` is no reach
    for the grader's files, and an error that names it neither."""
    run = result(accesses=[access("open", "../data.csv", "/home/grader/tmp/w3d4-sb-abc/data.csv")],
                 cells=[error_cell("FileNotFoundError", "[Errno 2] No such file or directory: "
                                   "'/home/grader/tmp/w3d4-sb-abc/data.csv'")])
    run.folder = "/home/grader/tmp/w3d4-sb-abc/job"
    assert integrity.flags(run, CHECKS) == []
    run.accesses = [access("glob.glob/2", "../grader/*", "/home/grader/tmp/w3d4-sb-abc/grader/*")]
    assert integrity.flags(run, CHECKS) == [
        "The notebook's code tried to reach files outside its folder: glob ../grader/*."]


@pytest.mark.parametrize("cell", [
    error_cell("FileNotFoundError", "[Errno 2] No such file or directory: 'data/solution.csv'"),  # their own file
    error_cell("FileNotFoundError", "[Errno 2] No such file or directory: '/home/alice/mnist.csv'"),
    error_cell("OSError", "[Errno 30] Read-only file system: '/venv/lib/python3.11/site-packages/einops'"),  # pip
    error_cell("ValueError", "[Errno 2] No such file or directory: '/work/solutions/x.py'"),  # no OSError
    {"index": 3, "status": "ok", "outputs": [{"output_type": "stream", "name": "stdout",
                                              "text": "could not use /work/solutions/s.py PermissionError\n"}]},
])
def test_honest_outputs_are_not_flagged(cell):
    assert integrity.flags(result(cells=[cell]), CHECKS) == []


# ---------------------------------------------------------------------------------------------
# What attacks leave: one line each
# ---------------------------------------------------------------------------------------------


def test_probes_that_ran_without_a_result_are_flagged():
    assert integrity.flags(result({}), CHECKS) == [
        f"Probes never ran: {len(CHECKS)} of {len(CHECKS)} checks got no result, although the notebook ran to the "
        "end (cells were blanked or the grader's code was stopped)."
    ]


def test_one_probe_without_a_result_is_flagged():
    probes = result().probes
    del probes[CHECKS[3].check_id]
    assert integrity.flags(result(probes), CHECKS)[0].startswith(f"Probes never ran: 1 of {len(CHECKS)} checks")


def test_results_no_probe_writes_are_flagged():
    probes = {c.check_id: {"ok": True, "data": {"forged": True}} for c in CHECKS}
    assert integrity.flags(result(probes), CHECKS) == [
        f"{len(CHECKS)} checks got a result in a form the grader's probes never write (other code in the kernel "
        "wrote or changed it)."
    ]


def test_an_always_equal_output_is_flagged_once_with_its_checks():
    probes = result().probes
    groupnorm = [c for c in CHECKS if c.test == "groupnorm"]
    for check in groupnorm:
        probes[check.check_id]["unusual"] = [ALWAYS_EQUAL, dict(ALWAYS_EQUAL)]  # seen twice in one probe
    assert integrity.flags(result(probes), CHECKS) == [
        "GroupNorm produced an object of type _AlwaysEqual (a torch.Tensor subclass defined by the submission, which "
        f"redefines __bool__, __eq__, __ne__) where a tensor was due ({len(groupnorm)} checks)."
    ]


def test_an_always_equal_object_that_is_no_tensor_is_flagged():
    probes = result().probes
    check = next(c for c in CHECKS if c.test == "swish")
    probes[check.check_id]["unusual"] = [{"type": "Cheat", "tensor": False, "redefines": ["__eq__"]}]
    assert integrity.flags(result(probes), CHECKS) == [
        "swish or SiLU produced an object of type Cheat (defined by the submission, which redefines __eq__) where a "
        "tensor was due (1 check)."
    ]


@pytest.mark.parametrize("unusual", ["a string", [{"type": "X", "tensor": True, "redefines": []}], [{"type": 3}]])
def test_malformed_notes_of_outputs_are_not_flagged(unusual):
    probes = result().probes
    probes[CHECKS[0].check_id]["unusual"] = unusual
    assert integrity.flags(result(probes), CHECKS) == []


GUS = [
    access("glob.glob/2", "../../../source/*/*.ipynb", "/source/*/*.ipynb"),
    access("glob.glob/2", "../../../gradebook.db", "/gradebook.db"),
    access("glob.glob/2", "/work/*/solutions/*solution*.py"),
    access("glob.glob/2", "/tmp/*/solutions/*solution*.py"),
    access("glob.glob/2", "/grader/*"),
]


def test_hunting_for_the_solutions_is_flagged():
    assert integrity.flags(result(accesses=GUS), CHECKS) == [
        "The notebook's code tried to reach files outside its folder: glob ../../../gradebook.db; glob "
        "/work/*/solutions/*solution*.py; glob /tmp/*/solutions/*solution*.py; glob /grader/*."
    ]


@pytest.mark.parametrize("record, shown", [
    (access("os.listdir", "/"), "list /"),
    (access("os.scandir", "/tmp/w3d4-sb-abc/grader"), "list /tmp/w3d4-sb-abc/grader"),
    (access("glob.glob/2", "/*/solutions"), "glob /*/solutions"),
    (access("glob.glob/2", "/**", "/**"), "glob /**"),
    (access("subprocess.Popen", "/", command="find / -name *solution*"), "run `find / -name *solution*`"),
    (access("open", "/course/.grader_secret"), "open /course/.grader_secret"),
    (access("sqlite3.connect", "../../gradebook.db", "/tmp/gradebook.db"), "open database ../../gradebook.db"),
    (access("open", "/tmp/w3d4-sb-abc/grader/kernel_probe.py"), "open /tmp/w3d4-sb-abc/grader/kernel_probe.py"),
])
def test_each_kind_of_reach_is_flagged(record, shown):
    assert integrity.flags(result(accesses=[record]), CHECKS) == [
        f"The notebook's code tried to reach files outside its folder: {shown}."
    ]


def test_a_refused_read_in_the_output_is_flagged():
    cells = [error_cell("PermissionError", "[Errno 13] Permission denied: '/srv/course/solutions/s.py'"),
             error_cell("OSError", "[Errno 30] Read-only file system: '../grader/kernel_probe.py'")]
    assert integrity.flags(result(cells=cells), CHECKS) == [
        "The notebook's code tried to reach files outside its folder: /srv/course/solutions/s.py (PermissionError); "
        "../grader/kernel_probe.py (OSError)."
    ]


def test_a_long_list_of_reaches_is_cut():
    records = [access("open", f"/work/solutions/{n}.py") for n in range(10)]
    flag = integrity.flags(result(accesses=records), CHECKS)[0]
    assert flag.count("open /work/solutions/") == integrity.MAX_ITEMS and flag.endswith("; and 4 more.")


def test_restarts_and_timeouts_are_stated_as_facts():
    run = result(restarts=2, cells=[{"index": 12, "status": "timeout", "outputs": []}])
    run.timed_out = True
    run.probe_status[CHECKS[0].check_id] = "timeout"
    assert integrity.flags(run, CHECKS, Limits(cell_timeout_s=60, notebook_timeout_s=300)) == [
        "The kernel was restarted 2 times after a crash or a hang.",
        "The notebook ran longer than 300 s and was stopped before its end.",
        "1 cell ran past the time limit twice (60 s, then 120 s) and was stopped (cell 12).",
        "The probes of 1 check ran past the time limit twice and were stopped.",
    ]


def test_a_cell_that_was_slow_once_is_not_flagged():
    """A retry that then finished is a busy machine, not a timeout."""
    assert integrity.flags(result(retries=1), CHECKS) == []


# ---------------------------------------------------------------------------------------------
# Where flags go: the verdict, and the notes cell the formgrader shows
# ---------------------------------------------------------------------------------------------


def test_flags_are_saved_and_old_verdicts_still_load(tmp_path: Path):
    verdict = Verdict("eve", "sha", "bubblewrap", 1.0, checks=[CheckResult("a", "b", "c", False, False, "m")],
                      flags=["GroupNorm produced ..."])
    verdict.save(tmp_path / "v.json")
    assert Verdict.load(tmp_path / "v.json").flags == ["GroupNorm produced ..."]
    old = json.loads((tmp_path / "v.json").read_text())
    del old["flags"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert Verdict.load(tmp_path / "old.json").flags == []


def test_the_notes_cell_shows_the_flags_under_their_heading():
    source = intake.notes_cell(["A note."], "bubblewrap", ["glob /work/*/solutions/*.py and __eq__ <b>"]).source
    assert "**Integrity flags**" in source
    assert source.splitlines()[-1] == r"- glob /work/\*/solutions/\*.py and \_\_eq\_\_ &lt;b&gt;"
    assert "Integrity flags" not in intake.notes_cell(["A note."], "bubblewrap").source


def test_apply_verdict_puts_the_flags_into_the_notes_cell():
    from grader.course.plugin import apply_verdict

    nb = intake.release_notebook()
    verdict = Verdict("finn", "sha", "bubblewrap", 1.0, flags=["Probes never ran: 26 of 26 checks got no result."])
    top = apply_verdict(nb, verdict).cells[0].source
    assert "**Integrity flags**" in top and "- Probes never ran: 26 of 26 checks got no result." in top


# ---------------------------------------------------------------------------------------------
# The checks' note of outputs that redefine comparisons (read by the probe runner)
# ---------------------------------------------------------------------------------------------


class _AlwaysEqual(torch.Tensor):
    def __eq__(self, other):
        return True

    def __bool__(self):
        return True


class _Cheat:
    def __eq__(self, other):
        return True


class _ReturnsSelf(nn.Module):
    def forward(self, x):
        return self


@dataclasses.dataclass
class _Pair:
    a: int


@pytest.fixture
def noted():
    """What `plain` notes during a test, starting from nothing."""
    import w3d4_checks
    from w3d4_checks import probing

    probing._unusual.clear()
    yield w3d4_checks
    probing._unusual.clear()


@pytest.mark.parametrize("value", [
    torch.zeros(2), (torch.zeros(1), torch.zeros(1)), None, 1.5, [torch.zeros(1)], _ReturnsSelf(), _Pair(1),
    nn.Parameter(torch.zeros(2)), torch.zeros(2).numpy(), {"out": torch.zeros(1)},
], ids=lambda v: type(v).__name__)
def test_honest_outputs_of_any_type_are_not_noted(noted, value):
    noted.plain(value)
    noted.plain_pair(value)
    assert noted.unusual_returns() == []


def test_an_always_equal_tensor_and_object_are_noted(noted):
    out = noted.plain(torch.zeros(2).as_subclass(_AlwaysEqual))
    assert type(out) is torch.Tensor, "the judge still gets a plain tensor"
    noted.plain_pair(_Cheat())
    assert noted.unusual_returns() == [
        {"type": "_AlwaysEqual", "tensor": True, "redefines": ["__bool__", "__eq__"]},
        {"type": "_Cheat", "tensor": False, "redefines": ["__eq__"]},
    ]


# ---------------------------------------------------------------------------------------------
# The kernel's audit hook, driven by hand (a hook added to this process could not be removed)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def recorder(tmp_path: Path):
    log = tmp_path / "audit.jsonl"
    fd = kernel_audit.os.open(str(log), kernel_audit.os.O_WRONLY | kernel_audit.os.O_CREAT | kernel_audit.os.O_APPEND)
    hook = kernel_audit.Recorder(fd, str(tmp_path / "job"))
    yield hook, lambda: [json.loads(line) for line in log.read_text().splitlines()]
    kernel_audit.os.close(fd)


def _called_from(filename: str, hook, event: str, args: tuple) -> None:
    """Raise `event` as code in `filename` would (the hook judges who called by the frames)."""
    exec(compile("hook(event, args)", filename, "exec"), {"hook": hook, "event": event, "args": args})


def test_the_hook_notes_the_submissions_reaches_outside_its_folder(recorder, tmp_path: Path):
    hook, records = recorder
    _called_from("/tmp/ipykernel_7/123.py", hook, "glob.glob/2", ("/work/*/solutions/*.py", False, None, None))
    _called_from("<string>", hook, "open", ("/course/gradebook.db", "ab", 0))
    _called_from("/tmp/ipykernel_7/123.py", hook, "subprocess.Popen", ("find", ["find", "/", "-name", "x"], None, None))
    _called_from("/tmp/ipykernel_7/123.py", hook, "glob.glob/2", ("*.py", False, "/grader", None))  # root_dir
    assert [(r["event"], r["resolved"]) for r in records()] == [
        ("glob.glob/2", "/work/*/solutions/*.py"), ("open", "/course/gradebook.db"), ("subprocess.Popen", "/"),
        ("glob.glob/2", "/grader/*.py"),
    ]


def test_the_hook_ignores_libraries_imports_the_grader_and_the_folder(recorder, tmp_path: Path):
    hook, records = recorder
    site = kernel_audit.sysconfig.get_paths()["purelib"]
    _called_from(f"{site}/matplotlib/font_manager.py", hook, "open", ("/etc/fonts/solution.conf", "r", 0))
    _called_from("<frozen importlib._bootstrap_external>", hook, "open", ("/work/solutions/x.py", "r", 0))
    _called_from(f"{kernel_audit.HERE}/kernel_probe.py", hook, "open", ("/work/solutions/x.py", "r", 0))
    _called_from("/tmp/ipykernel_7/1.py", hook, "open", (str(tmp_path / "job" / "solution.py"), "r", 0))
    _called_from("/tmp/ipykernel_7/1.py", hook, "open", (kernel_audit.PROBE_RUNNER, "r", 0))  # a probe cell
    _called_from("/tmp/ipykernel_7/1.py", hook, "open", (3, "r", 0))  # a file descriptor
    _called_from("/tmp/ipykernel_7/1.py", hook, "compile", (b"", "x"))  # not watched
    assert records() == []


def test_the_hook_sees_through_the_standard_library(recorder):
    hook, records = recorder
    stdlib = kernel_audit.sysconfig.get_paths()["stdlib"]
    code = "def walk(*unused):\n    hook('os.scandir', (folder,))\n"  # a stdlib helper that lists a folder
    namespace: dict = {"hook": hook, "folder": "/"}
    exec(compile(code, f"{stdlib}/os_like.py", "exec"), namespace)
    _called_from("/tmp/ipykernel_7/2.py", namespace["walk"], "unused", ())  # a cell calls it
    globbing: dict = {"hook": hook, "folder": "/grader"}
    exec(compile(code, f"{stdlib}/glob.py", "exec"), globbing)  # a glob's own listing: its pattern was noted
    _called_from("/tmp/ipykernel_7/2.py", globbing["walk"], "unused", ())
    assert [(r["event"], r["path"]) for r in records()] == [("os.scandir", "/")]


def test_the_hook_never_raises(recorder):
    hook, _ = recorder
    hook("open", ())  # arguments of an unexpected shape
    hook("subprocess.Popen", (None, object(), None, None))


def test_the_kernel_starts_through_the_audit_hook():
    """The sandbox's kernel command runs kernel_audit.py, which is copied into the grader folder."""
    from grader.grading import sandbox

    source = Path(sandbox.__file__).read_text(encoding="utf-8")
    assert '"kernel_audit.py"' in source and 'HERE / "kernel_audit.py"' in source
    assert sys.version_info >= (3, 11)  # glob.glob/2 and the audit events the hook reads


# ---------------------------------------------------------------------------------------------
# The corpora of honest code, in this process: what their probes would report flags nothing
# ---------------------------------------------------------------------------------------------


def _modules():
    """(name, module, the tests to probe or None for all) of every mutant (its own test), correct
    variant, correct style and spill (the tests of what they replace), and the untouched stubs."""
    import types

    import correct
    from correct import styles
    from mutants import namespace, stub_namespace
    from mutants.corpus import MUTANTS
    from w3d4_checks import EXERCISES

    yield "stubs", stub_namespace(), None
    for mutant in MUTANTS:
        yield f"mutant {mutant.name}", namespace(*mutant.edits, name=f"mutant_{mutant.name}"), {mutant.test}
    for name in correct.VARIANTS:
        yield f"correct {name}", correct.load(name), None
    lesson = paths.LESSON_SOURCE.read_text(encoding="utf-8")
    for name, replacements in {**styles.STYLES, **styles.SPILLS}.items():
        module = types.ModuleType(f"style_{name}")
        exec(compile(styles.build(lesson, replacements), f"<style {name}>", "exec"), module.__dict__)
        yield f"style {name}", module, {t for t, e in EXERCISES.items() if set(e.subjects) & set(replacements)}


@pytest.mark.usefixtures("one_thread")
def test_no_honest_module_of_the_corpora_is_flagged(noted):
    """Every check of every mutant (each a realistic mistake), correct variant and style, probed as
    the sandbox's runner does (visible probe, then the weights run), with what `plain` noted."""
    import checking
    from grader.grading.plan import Check

    flagged = {}
    for label, module, tests in _modules():
        checks, probes = [], {}
        for n, (test, kwargs) in enumerate(checking.CALLS):
            if tests is not None and test not in tests:
                continue
            subjects = tuple(noted.EXERCISES[test].subjects)
            if not all(hasattr(module, name) for name in subjects):
                continue  # the correct corpus leaves out the bonus
            check = Check(f"{test}-{n}", test, test, subjects, kwargs)
            noted.probing._unusual.clear()
            data = checking.probe(module, test, kwargs)
            checks.append(check)
            probes[check.check_id] = {"ok": True, "data": data, "unusual": noted.unusual_returns()}
        run = SandboxResult("bubblewrap", 1.0, False, probes=probes,
                            probe_status={c.check_id: "ok" for c in checks}, folder=FOLDER)
        if found := integrity.flags(run, checks):
            flagged[label] = found
    assert flagged == {}
