# Generated from checks/w3d4_checks/exercises.py by `python -m grader build`: edit that file, not this one.
"""The registry: one entry per exercise, in the lesson's order.

An exercise's name is everywhere the same: the grade_id of its answer cell, `test_<name>` for its
test cell and for the function in w3d4_test that the cell calls. Names are unique across the day:
the three parts share this registry, and `assignment` says which lesson each exercise belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .attention import judge_self_attention, probe_self_attention
from .attention_block import judge_attention_block, probe_attention_block
from .blocks import (
    judge_down_block,
    judge_mid_block,
    judge_residual_block,
    judge_up_block,
    probe_down_block,
    probe_mid_block,
    probe_residual_block,
    probe_up_block,
)
from .diffusion import (
    judge_linear_schedule,
    judge_normalize_img,
    judge_q_eq2,
    judge_q_eq4,
    probe_linear_schedule,
    probe_normalize_img,
    probe_q_eq2,
    probe_q_eq4,
)
from .diffusion_noise import (
    judge_noise_img,
    judge_noise_schedule,
    judge_reconstruct,
    probe_noise_img,
    probe_noise_schedule,
    probe_reconstruct,
)
from .diffusion_sampling import judge_ddpm_sample, probe_ddpm_sample
from .diffusion_training import judge_tiny_diffuser, judge_train_loop, probe_tiny_diffuser, probe_train_loop
from .conv_transpose import BONUS_CLASS, judge_conv_transpose2d, probe_conv_transpose2d
from .embeddings import judge_sinusoidal_embeddings, probe_sinusoidal_embeddings
from .evaluation import judge_classifier_score, judge_frechet_distance, probe_classifier_score, probe_frechet_distance
from .groupnorm import judge_groupnorm, probe_groupnorm
from .seeding import SEED
from .swish import judge_swish, probe_swish
from .unet import judge_unet, probe_unet


@dataclass(frozen=True)
class Exercise:
    """One exercise and its check.

    probe(*subjects, seed=, device=, **call) runs the student's code and returns plain data;
    judge(data, seed=, **call) returns the PASS summary or raises AssertionError (see __init__)."""

    name: str
    subjects: tuple[str, ...]  # the notebook objects the check takes, in order
    probe: Callable[..., dict]
    judge: Callable[..., str]
    points: float  # 0 for the bonus
    calls: tuple[dict, ...] = ({},)  # the keyword arguments of each call in the notebook's test cell
    # Only for blocks whose numbers the autograder also checks with its own weights: what to tell a
    # student whose block computes other numbers, and the exercises that the block is built on.
    wiring: str = ""
    builds_on: tuple[str, ...] = ()
    assignment: str = "w3d4_part2"  # the lesson (nbgrader assignment) whose notebook holds the exercise


EXERCISES: dict[str, Exercise] = {
    e.name: e
    for e in (
        # --- part 1: diffusion from scratch (assignment "w3d4_part1") ---
        Exercise("normalize_img", ("normalize_img", "denormalize_img"), probe_normalize_img, judge_normalize_img, 1,
                 assignment="w3d4_part1"),
        Exercise("linear_schedule", ("linear_schedule",), probe_linear_schedule, judge_linear_schedule, 1,
                 assignment="w3d4_part1"),
        Exercise("q_eq2", ("q_eq2",), probe_q_eq2, judge_q_eq2, 1, assignment="w3d4_part1"),
        Exercise("q_eq4", ("q_eq4",), probe_q_eq4, judge_q_eq4, 2, assignment="w3d4_part1"),
        Exercise("noise_schedule", ("NoiseSchedule",), probe_noise_schedule, judge_noise_schedule, 2,
                 assignment="w3d4_part1"),
        Exercise("noise_img", ("noise_img", "NoiseSchedule"), probe_noise_img, judge_noise_img, 2,
                 assignment="w3d4_part1"),
        Exercise("reconstruct", ("reconstruct", "NoiseSchedule"), probe_reconstruct, judge_reconstruct, 1,
                 assignment="w3d4_part1"),
        Exercise("tiny_diffuser", ("TinyDiffuser",), probe_tiny_diffuser, judge_tiny_diffuser, 1,
                 assignment="w3d4_part1"),
        Exercise("train_loop", ("train", "TrainConfig"), probe_train_loop, judge_train_loop, 2,
                 assignment="w3d4_part1"),
        Exercise("ddpm_sample", ("sample", "NoiseSchedule"), probe_ddpm_sample, judge_ddpm_sample, 2,
                 assignment="w3d4_part1"),
        # --- part 2: the U-Net (assignment "w3d4_part2") ---
        Exercise("groupnorm", ("GroupNorm",), probe_groupnorm, judge_groupnorm, 2,
                 calls=({"affine": False}, {"affine": True})),
        Exercise("sinusoidal_embeddings", ("SinusoidalPositionEmbeddings",), probe_sinusoidal_embeddings,
                 judge_sinusoidal_embeddings, 1),
        Exercise("swish", ("swish", "SiLU"), probe_swish, judge_swish, 1),
        Exercise("self_attention", ("SelfAttention",), probe_self_attention, judge_self_attention, 2),
        Exercise("attention_block", ("AttentionBlock",), probe_attention_block, judge_attention_block, 1),
        Exercise(
            "residual_block", ("ResidualBlock",), probe_residual_block, judge_residual_block, 2,
            wiring="Each round is conv 3x3, then GroupNorm, then SiLU; the step embedding goes through SiLU and "
            "Linear and is added between the rounds; the shortcut (x, or its 1x1 conv) is added last.",
        ),
        Exercise(
            "down_block", ("DownBlock",), probe_down_block, judge_down_block, 2,
            calls=({"downsample": True}, {"downsample": False}),
            wiring="The order is residual block, residual block, attention block; the skip is that output, and the "
            "4x4 stride-2 conv comes after it.",
            builds_on=("residual_block",),
        ),
        Exercise(
            "up_block", ("UpBlock",), probe_up_block, judge_up_block, 2,
            calls=({"upsample": True}, {"upsample": False}),
            wiring="Concatenate x then skip along the channels (t.cat([x, skip], dim=1)), then residual block, "
            "residual block, attention block, then the transposed convolution.",
            builds_on=("residual_block",),
        ),
        Exercise(
            "mid_block", ("MidBlock",), probe_mid_block, judge_mid_block, 1,
            wiring="The order is residual block, attention block, residual block.",
            builds_on=("residual_block",),
        ),
        Exercise(
            "unet", ("Unet",), probe_unet, judge_unet, 2,
            wiring="The step embedding is sinusoidal embedding, Linear, GELU, Linear; then the 7x7 conv, the down "
            "blocks (keep each skip), the mid block, the up blocks (each takes the last skip not used yet), the "
            "final residual block and the 1x1 conv.",
            builds_on=("residual_block", "down_block", "mid_block", "up_block"),
        ),
        Exercise("conv_transpose2d", (BONUS_CLASS,), probe_conv_transpose2d, judge_conv_transpose2d, 0),
        # --- part 3: train the U-Net and measure it (assignment "w3d4_part3") ---
        Exercise("frechet_distance", ("frechet_distance",), probe_frechet_distance, judge_frechet_distance, 3,
                 assignment="w3d4_part3"),
        Exercise("classifier_score", ("classifier_score",), probe_classifier_score, judge_classifier_score, 2,
                 assignment="w3d4_part3"),
    )
}


def exercises_of(assignment: str) -> dict[str, Exercise]:
    """The exercises of one lesson, in its order."""
    return {name: e for name, e in EXERCISES.items() if e.assignment == assignment}


def run_check(name: str, *subjects, seed: int = SEED, device: Optional[str] = None, **call) -> str:
    """Probe then judge in this process: the PASS summary, or an AssertionError with the diagnosis."""
    exercise = EXERCISES[name]
    return exercise.judge(exercise.probe(*subjects, seed=seed, device=device, **call), seed=seed, **call)
