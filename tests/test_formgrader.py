"""The instructor's day in a real browser: grade, review in the formgrader, set a score by hand,
regrade, and find the new total in every report; maths rendered with the internet cut off.

`python -m grader grade` grades the sample class; `python -m grader formgrader` serves nbgrader's
formgrader on it; headless Chromium (Debian's, driven by Playwright) may reach 127.0.0.1 and files
only.
"""

import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from browser_support import _stop_process_group, free_port, offline_page
from figures.diagrams import CHROMIUM
from grader import paths
from grader.course import reports as reports_module
from grader.course.commands import tool_env

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: the browser tests need chromium"),
    pytest.mark.slow,  # grading, a Jupyter server and a browser: only in `make test`
]

SAMPLE = sorted(p.stem for p in (paths.REPO / paths.SAMPLE_DIR).glob("*.ipynb"))
HAND = ("cleo_first_half", "test_groupnorm", 1.5)  # student, test, the score set by hand


def grade_cli(out: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "grader", "grade", "--assignment", paths.ASSIGNMENT, "--out", str(out),
                             "--export", "canvas"],
                            cwd=paths.REPO, env=tool_env(), capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def reports(out: Path) -> dict:
    """Totals per student as each report states them, and the per-test rows."""
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        nbgrader = {r["student_id"]: float(r["score"]) for r in csv.DictReader(f)}
    with open(out / paths.ASSIGNMENT / "grades_by_test.csv", newline="", encoding="utf-8") as f:
        by_test = list(csv.DictReader(f))
    summed: dict[str, float] = {}
    for row in by_test:
        summed[row["student_id"]] = summed.get(row["student_id"], 0.0) + float(row["final_score"])
    summary = {r["student_id"]: r for r in json.loads((out / paths.ASSIGNMENT / "summary.json").read_text())}
    with open(out / paths.ASSIGNMENT / "grades_canvas.csv", newline="", encoding="utf-8") as f:
        canvas = {r["SIS Login ID"]: float(r[reports_module.CANVAS_COLUMN])
                  for r in csv.DictReader(f) if r["Student"] != "Points Possible"}
    return {"grades.csv": nbgrader, "grades_by_test.csv": summed, "canvas": canvas,
            "summary.json": {s: r["score"] for s, r in summary.items()}, "rows": by_test, "summary": summary}


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("instructor") / "grading"
    return out, grade_cli(out).stdout


@pytest.fixture(scope="module")
def formgrader(graded):
    """`python -m grader formgrader`, as an instructor starts it: yields the URL it prints."""
    out, _ = graded
    server = subprocess.Popen(
        [sys.executable, "-m", "grader", "formgrader", "--out", str(out), "--port", str(free_port())],
        cwd=paths.REPO, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )
    try:
        deadline, url = time.monotonic() + 120, None
        while url is None and time.monotonic() < deadline and server.poll() is None:
            line = server.stdout.readline()
            found = re.search(r"(http://127\.0\.0\.1:\d+/formgrader\?token=\w+)", line)
            url = found.group(1) if found else None
        assert url, f"the formgrader printed no URL (exit code {server.poll()})"
        yield url
    finally:
        _stop_process_group(server)


def submission_links(page, url: str) -> dict[str, str]:
    base = url.split("/formgrader")[0]
    page.goto(url)  # logs in with the token
    page.goto(f"{base}/formgrader/gradebook/{paths.ASSIGNMENT}/{paths.NOTEBOOK_NAME.removesuffix('.ipynb')}")
    page.wait_for_selector("a.name-shown", state="attached")
    return {a.inner_text(): base + a.get_attribute("href") for a in page.query_selector_all("a.name-shown")}


def shown_scores(page) -> dict[str, float]:
    """Per-test scores on a submission's review page: a hand-set score, else the autograder's."""
    page.wait_for_load_state("networkidle")
    return {i.get_attribute("id"): float(i.input_value() or i.get_attribute("placeholder"))
            for i in page.query_selector_all("input.score")}


def rendered_maths(page) -> tuple[int, list[str]]:
    """How many maths elements are drawn with a size, and any TeX left raw in the page's text."""
    drawn = page.evaluate("""() => [...document.querySelectorAll('math, mjx-container, .MathJax')]
        .filter((m) => { const b = m.getBoundingClientRect(); return b.width > 0 && b.height > 0; }).length""")
    raw = re.findall(r"\$\$.{0,40}|\\frac\{.{0,20}|\\omega", page.inner_text("body"))
    return drawn, raw


def test_review_set_a_score_by_hand_regrade_and_every_report_agrees(graded, formgrader, browser):
    out, _ = graded
    before = reports(out)
    for name in ("grades.csv", "grades_by_test.csv", "summary.json", "canvas"):
        assert before[name] == before["grades.csv"], f"{name} disagrees with nbgrader's export: {before[name]}"
    page = offline_page(browser)
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    links = submission_links(page, formgrader)
    assert sorted(links) == SAMPLE, sorted(links)

    # Every per-test score of grades_by_test.csv is the one the formgrader shows.
    for student, link in links.items():
        page.goto(link)
        shown = shown_scores(page)
        in_csv = {r["test"]: float(r["final_score"]) for r in before["rows"] if r["student_id"] == student}
        assert shown == in_csv, f"{student}: formgrader {shown} != grades_by_test.csv {in_csv}"

    # The review page: diagnoses wrap inside their box and lead with the test's name and points;
    # the maths is drawn although the internet is cut off.
    student, test, score = HAND
    page.goto(links[student])
    page.wait_for_load_state("networkidle")
    outputs = page.evaluate("""() => [...document.querySelectorAll('.output_area pre')]
        .map((pre) => [pre.innerText, pre.scrollWidth, pre.clientWidth])""")
    graded_outputs = [o for o in outputs if re.match(r"test_\w+: [\d.]+ / [\d.]+ points", o[0])]
    tests = [r["test"] for r in before["rows"] if r["student_id"] == student]
    assert [o[0].split(":")[0] for o in graded_outputs] == tests, [o[0][:60] for o in outputs]
    too_wide = [o[0][:80] for o in graded_outputs if o[1] > o[2] + 1]
    assert not too_wide, f"diagnoses wider than their box: {too_wide}"
    drawn, raw = rendered_maths(page)
    assert drawn >= 5 and not raw, f"review page: {drawn} formulas drawn, raw TeX: {raw[:3]}"

    # Set a score by hand, as an instructor does: type it and leave the field.
    with page.expect_response(lambda r: "/api/grade/" in r.url and r.request.method == "PUT") as saved:
        page.fill(f"#{test}", str(score))
        page.press(f"#{test}", "Tab")
    assert saved.value.ok and json.loads(saved.value.text())["manual_score"] == score

    # Regrade: the hand score survives, every report shows the new total, and the run says so.
    printed = grade_cli(out).stdout
    after = reports(out)
    auto = next(float(r["auto_score"]) for r in before["rows"] if (r["student_id"], r["test"]) == (student, test))
    want = before["grades.csv"][student] - auto + score
    assert auto != score
    for name in ("grades.csv", "grades_by_test.csv", "summary.json", "canvas"):
        assert after[name][student] == pytest.approx(want), f"{name}: {after[name][student]} != {want}"
        others = {s: t for s, t in after[name].items() if s != student}
        assert others == {s: t for s, t in before["grades.csv"].items() if s != student}, name
    row = next(r for r in after["rows"] if (r["student_id"], r["test"]) == (student, test))
    assert (float(row["auto_score"]), float(row["manual_score"]), float(row["final_score"])) == (auto, score, score)
    assert after["summary"][student]["hand_graded"] == [test]
    assert re.search(rf"{student}\s+{want:g} / 16", printed), printed[-1500:]
    assert f"kept for 1 student(s): {student}" in printed, printed[-1500:]
    page.goto(links[student])
    assert shown_scores(page)[test] == score
    assert not [u for u in failed if u.startswith("http") and "127.0.0.1" not in u], failed


def test_feedback_names_each_test_is_small_and_renders_maths_offline(graded, browser):
    out, _ = graded
    feedback, release = out / "course" / "feedback", out / "course" / "release"
    page_name = paths.NOTEBOOK_NAME.replace(".ipynb", ".html")
    tests = [r["test"] for r in reports(out)["rows"] if r["student_id"] == SAMPLE[0]]
    shared = {p.name for p in feedback.iterdir() if p.is_file()}
    assert shared and all((release / paths.ASSIGNMENT / name).is_file() for name in shared)
    for student in SAMPLE:
        folder = feedback / student / paths.ASSIGNMENT
        assert [p.name for p in folder.iterdir()] == [page_name], f"{student}'s feedback holds more than its page"
        size = sum(p.stat().st_size for p in (feedback / student).rglob("*") if p.is_file())
        assert size < 200_000, f"{student}'s feedback folder holds {size / 1000:.0f} KB"
        html = (folder / page_name).read_text(encoding="utf-8")
        assert "<script" not in html and not re.search(r"\b(?:src|href)=[\"']?(?:https?:)?//[^\"']*\.js", html)

    page = offline_page(browser)
    page.goto((feedback / "cleo_first_half" / paths.ASSIGNMENT / page_name).as_uri())
    page.wait_for_load_state("load")
    summary = page.inner_text("#toc")
    missing = [t for t in tests if t not in summary]
    assert not missing and "Test cell" not in summary, f"the summary does not name {missing}: {summary[:300]}"
    drawn, raw = rendered_maths(page)
    assert drawn >= 5 and not raw, f"feedback: {drawn} formulas drawn, raw TeX: {raw[:3]}"
    broken = page.evaluate("() => [...document.images].filter((i) => !i.naturalWidth).map((i) => i.src)")
    assert not broken, f"figures that do not load in the instructor's copy: {broken}"
