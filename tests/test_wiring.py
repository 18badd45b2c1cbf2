"""The grader's numbers check (grader/grading/weights_run.py and wiring.py): correct blocks pass however they are written,
mistakes that the visible tests let through fail with a diagnosis, and forged or incomplete probe
results fail."""

from __future__ import annotations

import copy

import pytest
import torch

import alt_impl
import w3d4_part2_unet_solution as solution
from checking import CALLS as ALL_CALLS
from checking import WIRED, check_weights, judge, probe, seeds
from w3d4_checks import SEED
from mutants import namespace
from mutants.corpus import CORRECT_VARIANTS, MUTANTS, WEIGHTS_MUTANTS

CALLS = [(name, kwargs) for name, kwargs in ALL_CALLS if name in WIRED]
CALL_IDS = [f"{name}{kwargs or ''}" for name, kwargs in CALLS]
IMPLEMENTATIONS = {"solution": solution, "alternative": alt_impl}
SEEDS = (SEED, 1_234_567_891)  # the notebook's, and one like those the grader draws


def visible_and_weights(data: dict, name: str, kwargs: dict, seed: int = SEED) -> None:
    judge(data, name, kwargs, seed)
    check_weights(name, data, seed, **kwargs)


def test_every_block_test_without_a_numeric_judge_is_checked():
    """The tests whose visible judge checks only facts are exactly those checked here."""
    structural = {name for name, _ in ALL_CALLS if "weights_out" in str(probe(solution, name, {}))}
    assert structural == set(WIRED) == {"residual_block", "down_block", "up_block", "mid_block", "unet"}


@pytest.mark.parametrize("seed", seeds(*SEEDS))
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("name, kwargs", CALLS, ids=CALL_IDS)
def test_correct_implementations_pass(name, kwargs, implementation, seed):
    visible_and_weights(probe(IMPLEMENTATIONS[implementation], name, kwargs, seed), name, kwargs, seed)


@pytest.mark.parametrize("variant", CORRECT_VARIANTS, ids=lambda v: v.name)
def test_correct_code_written_another_way_passes(variant):
    module = namespace(*variant.edits, name=f"variant_{variant.name}")
    kwargs = dict(variant.kwargs)
    visible_and_weights(probe(module, variant.test, kwargs), variant.test, kwargs)


@pytest.mark.parametrize("mutant", WEIGHTS_MUTANTS, ids=lambda m: m.name)
def test_mistakes_the_visible_tests_miss_fail_here(mutant):
    module = namespace(*mutant.edits, name=f"mutant_{mutant.name}")
    data = probe(module, mutant.test, mutant.kwargs)
    judge(data, mutant.test, mutant.kwargs)  # the visible test passes
    with pytest.raises(AssertionError) as failure:
        check_weights(mutant.test, data, **mutant.kwargs)
    assert mutant.message in str(failure.value), str(failure.value)


def _scaled(value, factor: float):
    return [v * factor for v in value] if isinstance(value, list) else value * factor


@pytest.mark.parametrize("name, kwargs", CALLS, ids=CALL_IDS)
def test_forged_or_foreign_outputs_fail(name, kwargs):
    data = probe(solution, name, kwargs)
    for key in [k for k in data if k.endswith("weights_out")]:
        forged = copy.deepcopy(data)
        forged[key] = _scaled(forged[key], 1.01)
        with pytest.raises(AssertionError, match="grader's weights"):
            check_weights(name, forged, **kwargs)
    # a correct block's output for another seed: the grader's weights and inputs depend on the seed
    with pytest.raises(AssertionError, match="grader's weights|not the sinusoidal embedding"):
        check_weights(name, probe(solution, name, kwargs, seed=5), **kwargs)


@pytest.mark.parametrize("name, kwargs", CALLS, ids=CALL_IDS)
def test_results_without_the_weights_run_fail(name, kwargs):
    data = {k: v for k, v in probe(solution, name, kwargs).items() if "weights" not in k}
    judge(data, name, kwargs)  # the facts alone still pass
    with pytest.raises(AssertionError, match="was not run with the grader's weights"):
        check_weights(name, data, **kwargs)


def test_a_step_embedding_that_is_not_sinusoidal_fails():
    data = probe(solution, "unet", {})
    data["weights_captured"] = torch.zeros_like(data["weights_captured"])
    with pytest.raises(AssertionError, match="not the sinusoidal embedding of num_steps"):
        check_weights("unet", data)


def test_layers_the_grader_cannot_set_are_named():
    class Scale(torch.nn.Module):  # a layer of no kind the grader knows
        def __init__(self):
            super().__init__()
            self.gain = torch.nn.Parameter(torch.full((), 2.0))

        def forward(self, x):
            return self.gain * x

    class ScaledResidualBlock(solution.ResidualBlock):
        def __init__(self, *args):
            super().__init__(*args)
            self.scale = Scale()

        def forward(self, x, time_emb):
            return self.scale(super().forward(x, time_emb))

    data = probe(type("m", (), {"ResidualBlock": ScaledResidualBlock}), "residual_block", {})
    assert "Scale holds parameters but is not a layer the grader knows" in data["change_weights_problems"]
    with pytest.raises(AssertionError, match="could not: Scale holds parameters"):
        check_weights("residual_block", data)


def test_missing_and_extra_layers_are_named():
    edits = (("nn.Conv2d(channels_out, channels_out, kernel_size=4, stride=2, padding=1)",
              "nn.Conv2d(channels_out, channels_out, kernel_size=3, stride=2, padding=1)"),)
    data = probe(namespace(*edits, name="down_3x3"), "down_block", {"downsample": True})
    with pytest.raises(AssertionError) as failure:
        check_weights("down_block", data, downsample=True)
    assert "missing: Conv2d(8, 8, 4x4)" in str(failure.value)
    assert "not in the lesson: Conv2d(8, 8, 3x3)" in str(failure.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("name, kwargs", CALLS, ids=CALL_IDS)
def test_passes_on_cuda(name, kwargs, implementation):
    visible_and_weights(probe(IMPLEMENTATIONS[implementation], name, kwargs, device="cuda"), name, kwargs)


def test_the_grader_runs_the_weights_check_after_the_visible_judge():
    from grader.grading.plan import Check
    from grader.grading.verdicts import judge as grader_judge

    check = Check("test_unet-1", "test_unet", "unet", ("Unet",))
    data = probe(solution, "unet", {}, seed=99)
    assert grader_judge(check, 99, {"ok": True, "data": data}).passed
    data["weights_out"] = _scaled(data["weights_out"], 1.01)
    verdict = grader_judge(check, 99, {"ok": True, "data": data})
    assert not verdict.passed and "with the grader's weights its output differs" in verdict.message
    assert "This check runs your own ResidualBlock, DownBlock, MidBlock and UpBlock." in verdict.message
    # the sub-blocks this student already fails are named
    verdict = grader_judge(check, 99, {"ok": True, "data": data}, failed=frozenset({"mid_block", "swish"}))
    assert "This check runs your MidBlock, which fails test_mid_block: fix that first." in verdict.message


# Mistakes in exercises that have their own test; the blocks that use them are still right.
OWN_EXERCISES = ("gn_unbiased_variance", "gn_eps_outside_sqrt", "emb_wrong_frequencies", "attn_softmax_over_queries",
                 "attn_scaled_by_channels", "ab_norm_with_4_groups", "swish_without_x", "ct_kernel_not_flipped")


def test_a_mistake_in_an_exercise_of_its_own_is_not_counted_again():
    mutants = {m.name: m for m in MUTANTS}
    module = namespace(*(edit for name in OWN_EXERCISES for edit in mutants[name].edits), name="own_exercises")
    for name, kwargs in ALL_CALLS:
        if name in {mutants[m].test for m in OWN_EXERCISES}:  # each of them is failed by its own test
            with pytest.raises(AssertionError):
                judge(probe(module, name, kwargs), name, kwargs)
    for name, kwargs in CALLS:
        visible_and_weights(probe(module, name, kwargs), name, kwargs)
