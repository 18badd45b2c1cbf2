"""Where things live in the repository. Every other module asks here instead of guessing."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"
GRADER = REPO / "grader"
FIGURES = REPO / "figures"
NOTEBOOKS = REPO / "notebooks"

ASSIGNMENT = "w3d4_part2"
LESSON_SOURCE = SOLUTIONS / "w3d4_part2_unet_solution.py"
NOTEBOOK_NAME = "w3d4_part2_unet.ipynb"
TESTS_MODULE = GRADER / "w3d4_test.py"
PART1_MODULE = SOLUTIONS / "w3d4_part1_diffusion_training_solution.py"
# The "Does it work?" section: its module and the pretrained checkpoint (`python -m training` writes it).
DIGITS_MODULE = REPO / "training" / "w3d4_digits.py"
DIGITS_CHECKPOINT = REPO / "training" / "w3d4_unet_digits.safetensors"

# Relative to an output root (the repository, or a scratch folder when checking for staleness).
SOURCE_DIR = Path("grader") / "source" / ASSIGNMENT
RELEASE_DIR = Path("notebooks") / ASSIGNMENT
SAMPLE_DIR = Path("grader") / "sample_class"
