"""Every mutant fails the intended visible test with the intended diagnosis, and every stub fails
with "<Name> is not implemented yet"."""

from __future__ import annotations

import pytest

import w3d4_test
from w3d4_checks import EXERCISES, SEED
from checking import CALLS, seeds
from mutants import namespace, stub_namespace
from mutants.corpus import MUTANTS

SEEDS = (SEED, 7)  # the notebook's seed and another, as a grader would pick


def run(module, test: str, seed: int = SEED, **kwargs) -> None:
    subjects = [getattr(module, name) for name in EXERCISES[test].subjects]
    getattr(w3d4_test, f"test_{test}")(*subjects, seed=seed, **kwargs)


def test_corpus_is_large_and_names_are_unique():
    assert len(MUTANTS) >= 30
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)


@pytest.mark.parametrize("seed", seeds(*SEEDS))
@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant_fails_with_its_diagnosis(mutant, seed):
    module = namespace(*mutant.edits, name=f"mutant_{mutant.name}")
    with pytest.raises(AssertionError) as failure:
        run(module, mutant.test, seed=seed, **mutant.kwargs)
    assert mutant.message in str(failure.value), f"{mutant.name} failed with another diagnosis:\n{failure.value}"


@pytest.mark.parametrize("name, kwargs", CALLS, ids=lambda v: str(v))
def test_every_stub_is_not_implemented_yet(name, kwargs):
    with pytest.raises(AssertionError, match=f"{EXERCISES[name].subjects[0]} is not implemented yet"):
        run(stub_namespace(), name, **kwargs)


FORWARD_STUBS = [
    "SinusoidalPositionEmbeddings",
    "SelfAttention",
    "AttentionBlock",
    "ResidualBlock",
    "DownBlock",
    "UpBlock",
    "MidBlock",
    "Unet",
    "ConvTranspose2dFromScratch",
    "GroupNorm",
]


@pytest.mark.parametrize("subject", FORWARD_STUBS)
def test_a_stubbed_forward_is_not_implemented_yet(subject):
    """The constructor is written but forward is still the stub."""
    name, kwargs = next((n, k) for n, k in CALLS if EXERCISES[n].subjects[0] == subject)
    with pytest.raises(AssertionError, match=f"{subject} is not implemented yet"):
        run(stub_namespace({f"{subject}.forward"}), name, **kwargs)


def test_a_stubbed_dependency_is_named():
    with pytest.raises(AssertionError, match=r"SelfAttention is not implemented yet \(AttentionBlock uses it\)"):
        run(stub_namespace({"SelfAttention.__init__", "SelfAttention.forward"}), "attention_block")
    with pytest.raises(AssertionError, match=r"swish is not implemented yet"):
        run(stub_namespace({"swish"}), "swish")
