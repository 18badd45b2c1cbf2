"""More correct styles (tests/correct/styles.py), each a few of the solution's definitions written
another way, pass every visible test and the grader's numeric check; wrong answers to one exercise
cost that exercise only."""

from __future__ import annotations

import types

import pytest

import correct
from correct import styles
from grader import paths

SEEDS = (0, 2**31 - 1)
COMPOSITE = ("residual_block", "down_block", "up_block", "mid_block", "unet")


pytestmark = pytest.mark.usefixtures("one_thread")


def module_for(name: str, replacements: dict[str, str]) -> types.ModuleType:
    module = types.ModuleType(f"style_{name}")
    source = styles.build(paths.LESSON_SOURCE.read_text(encoding="utf-8"), replacements)
    exec(compile(source, f"<style {name}>", "exec"), module.__dict__)
    return module


@pytest.mark.parametrize("name", styles.STYLES)
def test_style_passes_every_check(name):
    module = module_for(name, styles.STYLES[name])
    for seed in SEEDS:
        failed = correct.failures(module, seed)
        assert not failed, f"{name} (seed {seed}):\n" + "\n".join(failed)


@pytest.mark.parametrize("name", styles.SPILLS)
def test_a_wrong_exercise_costs_only_itself(name):
    module = module_for(name, styles.SPILLS[name])
    assert correct.failures(module, 0), f"{name} is meant to be wrong somewhere"
    failed = correct.failures(module, 0, only=COMPOSITE)
    assert not failed, f"{name}'s mistake spilled into the blocks:\n" + "\n".join(failed)
