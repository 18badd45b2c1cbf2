"""Where things live in the repository. Every other module asks here instead of guessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"
GRADER = REPO / "grader"
FIGURES = REPO / "figures"
NOTEBOOKS = REPO / "notebooks"
COURSE = REPO / "course"  # the nbgrader course folder: its config, and the generated sources and sample classes
NBGRADER_CONFIG = COURSE / "nbgrader_config.py"

# What ships beside every lesson's notebook to run its tests: the short tests module and the checks
# library (one for the whole day: each exercise names its lesson).
CHECKS = REPO / "checks"
TESTS_MODULE = CHECKS / "w3d4_test.py"
CHECKS_PACKAGE = CHECKS / "w3d4_checks"
TRAINING = REPO / "training"
# Part 1's module, which parts 2 and 3 import: generated from part 1's lesson source by the build.
PART1_MODULE = SOLUTIONS / "w3d4_part1_diffusion_training_solution.py"
# The "Does it work?" section of part 2: its module and the pretrained checkpoint (`python -m training` writes it).
DIGITS_MODULE = TRAINING / "w3d4_digits.py"
PAIRING_MODULE = TRAINING / "w3d4_pairing.py"  # w3d4_digits loads the checkpoint through it
DIGITS_CHECKPOINT = TRAINING / "w3d4_unet_digits.safetensors"
# Part 3: the reference Unet from torch built-ins, the loader of the student's own part 2 Unet, the
# digits classifier that the metrics read (and its weights), FashionMNIST's loader.
BUILTIN_UNET = TRAINING / "builtin_unet.py"
MY_UNET_MODULE = TRAINING / "w3d4_my_unet.py"
CLASSIFIER_MODULE = TRAINING / "w3d4_classifier.py"
CLASSIFIER_CHECKPOINT = TRAINING / "w3d4_digits_classifier.safetensors"
FASHION_MODULE = TRAINING / "w3d4_fashion.py"
BUILD_MANIFEST = Path("course") / "build_manifest.json"  # relative to an output root, like the folders below


def _with_digest(path: Path) -> tuple[Path, Path]:
    """A data file and its SHA-256 file, which the lesson checks before loading it."""
    return path, path.with_name(path.name + ".sha256")


@dataclass(frozen=True)
class Lesson:
    """One lesson of the day: one source, one nbgrader assignment, one student notebook.

    Folders are relative to an output root (the repository, or a scratch folder when the build
    checks for staleness)."""

    assignment: str  # the nbgrader assignment name
    source: Path  # THE source (jupytext py:percent): edit this
    notebook: str  # the notebook's file name in the assignment
    modules: tuple[Path, ...] = ()  # copied beside the notebook, with a "generated from" line
    data: tuple[Path, ...] = ()  # copied byte for byte (checkpoints and their digests)
    exports: Path | None = None  # the module the build generates from this source, for later lessons

    @property
    def title(self) -> str:
        """"w3d4_part1" -> "W3D4 part 1"."""
        return self.assignment.upper().replace("_PART", " part ")

    @property
    def notebook_id(self) -> str:
        return self.notebook.removesuffix(".ipynb")

    @property
    def source_dir(self) -> Path:
        return Path("course") / "source" / self.assignment

    @property
    def release_dir(self) -> Path:
        return Path("notebooks") / self.assignment

    @property
    def sample_dir(self) -> Path:
        return Path("course") / "sample_class" / self.assignment

    def release_notebook(self, root: Path = REPO) -> Path:
        return root / self.release_dir / self.notebook


LESSONS: dict[str, Lesson] = {
    lesson.assignment: lesson
    for lesson in (
        # Part 1 needs nothing beside its notebook; its definitions become PART1_MODULE for the others.
        Lesson("w3d4_part1", SOLUTIONS / "w3d4_part1_diffusion_solution.py", "w3d4_part1_diffusion.ipynb",
               exports=PART1_MODULE),
        Lesson("w3d4_part2", SOLUTIONS / "w3d4_part2_unet_solution.py", "w3d4_part2_unet.ipynb",
               modules=(PART1_MODULE, DIGITS_MODULE, PAIRING_MODULE), data=_with_digest(DIGITS_CHECKPOINT)),
        Lesson("w3d4_part3", SOLUTIONS / "w3d4_part3_train_evaluate_solution.py", "w3d4_part3_train_evaluate.ipynb",
               modules=(PART1_MODULE, DIGITS_MODULE, PAIRING_MODULE, BUILTIN_UNET, MY_UNET_MODULE, CLASSIFIER_MODULE,
                        FASHION_MODULE),
               data=(*_with_digest(DIGITS_CHECKPOINT), *_with_digest(CLASSIFIER_CHECKPOINT))),
    )
}


class UnknownAssignment(KeyError):
    def __str__(self) -> str:
        return f"no assignment {self.args[0]!r}; the course has {', '.join(LESSONS)}"


def lesson(assignment: str) -> Lesson:
    """The lesson of an nbgrader assignment name; UnknownAssignment names the ones there are."""
    try:
        return LESSONS[assignment]
    except KeyError:
        raise UnknownAssignment(assignment) from None


# Part 2, the U-Net: the assignment that commands and tests use when none is named.
ASSIGNMENT = "w3d4_part2"
LESSON_SOURCE = LESSONS[ASSIGNMENT].source
NOTEBOOK_NAME = LESSONS[ASSIGNMENT].notebook
SOURCE_DIR = LESSONS[ASSIGNMENT].source_dir
RELEASE_DIR = LESSONS[ASSIGNMENT].release_dir
SAMPLE_DIR = LESSONS[ASSIGNMENT].sample_dir
