"""The reference solution of the lesson, which the figures are computed from."""

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTION_MODULE = "w3d4_part2_unet_solution"
# The lesson code the figures compute from: part 2's solution and part 1's, which it builds on
# (`DiffusionModel`). figures/inputs.py records a digest of each with every figure drawn from them.
# The grader's tests module, which the solution also imports, computes nothing they draw.
SOURCES = [ROOT / "solutions" / f"{SOLUTION_MODULE}.py",
           ROOT / "solutions" / "w3d4_part1_diffusion_training_solution.py"]


def solution():
    """Import the lesson source as a module (it imports the tests module and part 1's module)."""
    for folder in (ROOT / "checks", ROOT / "solutions"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    return importlib.import_module(SOLUTION_MODULE)
