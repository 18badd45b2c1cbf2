"""A saved verdict is reused only for the same notebook, grading code and limits."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from grader import paths
from grader.course.grade import NOTEBOOK_ID, reusable_verdicts
from grader.course.workspace import Workspace
from grader.grading import verdicts
from grader.grading.sandbox import Limits
from grader.grading.verdicts import Verdict, cached, grading_sha, notebook_sha, verdict_path

NB = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])


def code_sha_of(folder: Path, monkeypatch) -> str:
    monkeypatch.setattr(verdicts, "GRADING_CODE", (folder,))
    verdicts._code_sha.cache_clear()
    try:
        return verdicts._code_sha()
    finally:
        verdicts._code_sha.cache_clear()


def test_the_digest_follows_every_judge(tmp_path: Path, monkeypatch):
    copy = tmp_path / "checks"
    shutil.copytree(paths.CHECKS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_sha_of(copy, monkeypatch)
    assert code_sha_of(copy, monkeypatch) == before, "the digest is deterministic"
    judge = copy / "w3d4_checks" / "groupnorm.py"
    judge.write_text(judge.read_text() + "\n# a fix in a judge\n")
    assert code_sha_of(copy, monkeypatch) != before


def test_limits_are_part_of_the_key():
    assert grading_sha(Limits()) == grading_sha(Limits())
    assert grading_sha(Limits()) != grading_sha(Limits(cell_timeout_s=61))


def saved(path: Path, sha: str) -> None:
    Verdict("ada", notebook_sha(NB), "bubblewrap", 1.0, grading_sha=sha).save(path)


def test_a_verdict_from_other_code_or_limits_is_not_reused(tmp_path: Path, monkeypatch):
    path = tmp_path / "v.json"
    saved(path, grading_sha(Limits()))
    assert cached(path, NB, Limits())[0] is not None
    assert cached(path, NB, Limits(cell_timeout_s=5)) == (None, "the grading code or limits changed")
    monkeypatch.setattr(verdicts, "_code_sha", lambda: "a judge was fixed")
    assert cached(path, NB, Limits()) == (None, "the grading code or limits changed")
    other = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 2")])
    monkeypatch.undo()
    assert cached(path, other, Limits()) == (None, "the notebook changed")
    assert cached(tmp_path / "none.json", NB, Limits()) == (None, "")


def test_a_regrade_after_a_judge_changed_recomputes_and_says_so(tmp_path: Path, monkeypatch, capsys):
    workspace = Workspace(tmp_path / "out")
    notebook = tmp_path / "ada.ipynb"
    nbformat.write(NB, notebook)
    saved(verdict_path(workspace.verdicts, "ada", paths.ASSIGNMENT, NOTEBOOK_ID), grading_sha(Limits()))
    assert set(reusable_verdicts(workspace, {"ada": notebook}, Limits())) == {"ada"}
    monkeypatch.setattr(verdicts, "_code_sha", lambda: "a judge was fixed")
    assert reusable_verdicts(workspace, {"ada": notebook}, Limits()) == {}
    assert "1 saved verdict(s) were made by other grading code or limits: regrading them" in capsys.readouterr().out
