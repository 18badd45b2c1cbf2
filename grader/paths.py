"""Where things live in the repository. Every other module asks here instead of guessing."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"
GRADER = REPO / "grader"
FIGURES = REPO / "figures"
NOTEBOOKS = REPO / "notebooks"
COURSE = REPO / "course"  # the nbgrader course folder: its config, and the generated source and sample class

ASSIGNMENT = "w3d4_part2"
LESSON_SOURCE = SOLUTIONS / "w3d4_part2_unet_solution.py"
NOTEBOOK_NAME = "w3d4_part2_unet.ipynb"
# What ships beside the notebook to run its tests: the short tests module and the checks library.
CHECKS = REPO / "checks"
TESTS_MODULE = CHECKS / "w3d4_test.py"
CHECKS_PACKAGE = CHECKS / "w3d4_checks"
PART1_MODULE = SOLUTIONS / "w3d4_part1_diffusion_training_solution.py"
# The "Does it work?" section: its module and the pretrained checkpoint (`python -m training` writes it).
DIGITS_MODULE = REPO / "training" / "w3d4_digits.py"
PAIRING_MODULE = REPO / "training" / "w3d4_pairing.py"  # w3d4_digits loads the checkpoint through it
DIGITS_CHECKPOINT = REPO / "training" / "w3d4_unet_digits.safetensors"
NBGRADER_CONFIG = COURSE / "nbgrader_config.py"

# Relative to an output root (the repository, or a scratch folder when checking for staleness).
SOURCE_DIR = Path("course") / "source" / ASSIGNMENT
RELEASE_DIR = Path("notebooks") / ASSIGNMENT
SAMPLE_DIR = Path("course") / "sample_class"
BUILD_MANIFEST = Path("course") / "build_manifest.json"
