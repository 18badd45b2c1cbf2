"""More correct styles (tests/correct/styles.py), each a few of the solution's definitions written
another way, pass every visible test and the grader's numeric check; wrong answers to one exercise
cost that exercise only."""

from __future__ import annotations

import types

import pytest

import w3d4_test
from correct import styles
from grader import paths, reference

SEEDS = (0, 2**31 - 1)
COMPOSITE = ("residual_block", "downblock", "upblock", "midblock", "unet")


pytestmark = pytest.mark.usefixtures("one_thread")


def module_for(name: str, replacements: dict[str, str]) -> types.ModuleType:
    module = types.ModuleType(f"style_{name}")
    source = styles.build(paths.LESSON_SOURCE.read_text(encoding="utf-8"), replacements)
    exec(compile(source, f"<style {name}>", "exec"), module.__dict__)
    return module


def failures(module: types.ModuleType, seed: int, only: tuple[str, ...] = ()) -> list[str]:
    failed = []
    for name, kwargs in w3d4_test.NOTEBOOK_CALLS:
        if name == "conv_transpose2d" or (only and name not in only):
            continue
        probe, judge = w3d4_test.TESTS[name]
        data = probe(*[getattr(module, s) for s in w3d4_test.SUBJECTS[name]], seed=seed, **kwargs)
        try:
            judge(data, seed=seed, **kwargs)
            if name in reference.CHECKED:
                reference.check_weights(w3d4_test, name, data, seed, **kwargs)
        except AssertionError as error:
            failed.append(f"{name}{kwargs or ''}: {error}")
    return failed


@pytest.mark.parametrize("name", styles.STYLES)
def test_style_passes_every_check(name):
    module = module_for(name, styles.STYLES[name])
    for seed in SEEDS:
        failed = failures(module, seed)
        assert not failed, f"{name} (seed {seed}):\n" + "\n".join(failed)


@pytest.mark.parametrize("name", styles.SPILLS)
def test_a_wrong_exercise_costs_only_itself(name):
    module = module_for(name, styles.SPILLS[name])
    assert failures(module, 0), f"{name} is meant to be wrong somewhere"
    failed = failures(module, 0, only=COMPOSITE)
    assert not failed, f"{name}'s mistake spilled into the blocks:\n" + "\n".join(failed)
