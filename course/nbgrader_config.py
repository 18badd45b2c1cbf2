"""nbgrader configuration for the W3D4 course, with the secure autograding path.

This folder is the course's nbgrader root: `source/` holds the instructor's notebook that
`python -m grader build` generates. `python -m grader grade` loads this file from a workspace of its
own (out/grading/course by default, a folder git ignores) and overrides only the folders, the
database, the limits and the exchange; the gradebook and students' folders land there.
"""

import os
import sys

import nbgrader

HERE = os.path.dirname(os.path.abspath(__file__))
# The repository root must be importable for the `grader` preprocessors and filters below.
if os.path.dirname(HERE) not in sys.path:
    sys.path.insert(0, os.path.dirname(HERE))

c = get_config()  # noqa: F821 - injected by nbgrader when it loads this file

c.CourseDirectory.course_id = "w3d4"
# nbgrader warns about, and mis-resolves, a relative root.
c.CourseDirectory.root = HERE

# Submissions are rebuilt on the release before nbgrader checks their metadata, so tampering is
# repaired and reported instead of failing the whole notebook.
c.Autograde.sanitize_preprocessors = [
    "grader.course.plugin.NormaliseSubmission",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# Student code runs in a sandbox and is judged outside it; nbgrader's in-kernel Execute is gone.
c.Autograde.autograde_preprocessors = [
    "grader.course.plugin.SandboxedExecute",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.SandboxedExecute.verdict_dir = os.path.join(HERE, "verdicts")
c.SandboxedExecute.secret_file = os.path.join(HERE, ".grader_secret")

# `nbgrader zip_collect`: files named STUDENT_w3d4_part2_unet.ipynb in the downloaded zip (the
# student id may itself contain underscores). nbgrader matches this against the full path.
c.FileNameCollectorPlugin.named_regexp = r".*/(?P<student_id>[^/]+?)_(?P<file_id>w3d4_part2_unet\.ipynb)$"

# HTML pages (feedback, and the formgrader's review page): maths rendered to MathML here, so that
# no page loads MathJax from a CDN (offline, readers saw raw TeX). Our template folder comes first:
# its base/mathjax.html.j2 replaces nbconvert's CDN script in every template; nbgrader's own
# templates (the formgrader's `formgrade`) stay reachable after it, since this list replaces the
# one the formgrader sets.
MATHS = {"markdown2html": "grader.course.maths.markdown2html"}
c.HTMLExporter.filters = MATHS
c.HTMLExporter.extra_template_basedirs = [
    os.path.join(os.path.dirname(HERE), "grader", "course", "templates"),
    os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader", "templates"),
]
# Feedback only (the exporter that `generate_feedback` makes is a child of GenerateFeedback, and
# these settings win over the c.HTMLExporter ones for it): our template names each test in the
# summary, wraps long outputs and inlines a small stylesheet, and code is coloured with fewer
# spans. Set as c.HTMLExporter.template_name it would replace the formgrader's `formgrade` page.
c.GenerateFeedback.HTMLExporter.template_name = "w3d4_feedback"
c.GenerateFeedback.HTMLExporter.filters = {**MATHS, "highlight_code": "grader.course.feedback.highlight_code",
                                           "clean_html": "grader.course.feedback.clean_html"}
