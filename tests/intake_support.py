"""Helpers shared by the intake tests (tests/test_intake*.py)."""

from __future__ import annotations

import json

import nbformat

from grader.grading import intake

UNREADABLE = "graded as an unanswered notebook"


def normalise(notebooks, nb) -> intake.Intake:
    """Intake of a notebook given as bytes, as a NotebookNode, or as plain JSON data."""
    if isinstance(nb, nbformat.NotebookNode):
        nb = notebooks.to_bytes(nb)
    elif not isinstance(nb, bytes):
        nb = json.dumps(nb).encode()
    return intake.normalise(nb, notebooks.release)


def assert_release_shape(notebooks, result: intake.Intake) -> None:
    """The release's cells in the release's order (extra cells have no grade_id and are left out)."""
    ids = [g for g in notebooks.grade_ids(result.notebook) if g is not None]
    assert ids == notebooks.grade_ids()


def minimal(cells: list, **top) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells, **top}
