"""Everything the build generates, as one unit: built in a scratch folder, then put in place.

    python -m grader build            course/source/, notebooks/, course/sample_class/, and part 1's module
    python -m grader build --check    which generated files differ from a fresh build

Hand edits to generated files are backed up to out/build-backups/ before they are overwritten, and
course/build_manifest.json records the digest of every generated file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from .. import paths
from .build import generate_release, write_source_dir
from .module import module_text
from .samples import write_samples

GENERATED_DIRS = tuple(folder for lesson in paths.LESSONS.values()
                       for folder in (lesson.source_dir, lesson.release_dir, lesson.sample_dir))
GENERATED_MODULES = {lesson.exports.relative_to(paths.REPO): lesson for lesson in paths.LESSONS.values() if lesson.exports}


def generated_files(out_root: Path) -> dict[str, str]:
    """sha256 of every generated file under out_root, keyed by its path relative to out_root."""
    found = [path for folder in GENERATED_DIRS for path in sorted((out_root / folder).rglob("*"))]
    found += [out_root / module for module in GENERATED_MODULES]
    return {path.relative_to(out_root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in found if path.is_file()}


def build_into(out_root: Path) -> dict[str, str]:
    """Build everything under out_root and return the digests of what was written."""
    for module, lesson in GENERATED_MODULES.items():  # first: the later lessons ship it
        (out_root / module).parent.mkdir(parents=True, exist_ok=True)
        (out_root / module).write_text(module_text(lesson.source, lesson.title), encoding="utf-8")
    source_dirs = {lesson: write_source_dir(out_root, lesson) for lesson in paths.LESSONS.values()}
    generate_release(source_dirs, out_root)
    for lesson in paths.LESSONS.values():
        write_samples(out_root, lesson)
    return generated_files(out_root)


def _back_up_edited(root: Path, fresh: dict[str, str]) -> list[str]:
    """Copy files that someone edited since the last build to out/build-backups/, before overwriting.

    A file counts as edited when its bytes match neither the last build (the manifest) nor this one,
    for example a student who worked in notebooks/w3d4_part2/ and then rebuilt.
    """
    manifest_path = root / paths.BUILD_MANIFEST
    last = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    current = generated_files(root)
    edited = [rel for rel, digest in current.items() if digest not in (last.get(rel), fresh.get(rel))]
    if not edited:
        return []
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    backup = Path("out") / "build-backups" / stamp
    for rel in edited:
        (root / backup / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, root / backup / rel)
    return [(backup / rel).as_posix() for rel in edited]


def build(root: Path = paths.REPO) -> list[str]:
    """Build into `root` (the repository). Returns the backups made of hand-edited generated files.

    Everything is built in a scratch folder first, so a failed build leaves the old files alone.
    """
    with tempfile.TemporaryDirectory(prefix="w3d4-build-") as scratch:
        fresh = build_into(Path(scratch))
        backups = _back_up_edited(root, fresh)
        for folder in GENERATED_DIRS:
            if (root / folder).exists():
                shutil.rmtree(root / folder)
            shutil.copytree(Path(scratch) / folder, root / folder)
        for module in GENERATED_MODULES:
            (root / module).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(scratch) / module, root / module)
    (root / paths.BUILD_MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    (root / paths.BUILD_MANIFEST).write_text(json.dumps(fresh, indent=1, sort_keys=True) + "\n")
    return backups


def stale_files() -> list[str]:
    """Generated files that differ from a fresh build (or are missing, or should not be there)."""
    with tempfile.TemporaryDirectory(prefix="w3d4-check-") as scratch:
        fresh = build_into(Path(scratch))
    current = generated_files(paths.REPO)
    stale = sorted(rel for rel in fresh.keys() | current.keys() if fresh.get(rel) != current.get(rel))
    manifest_path = paths.REPO / paths.BUILD_MANIFEST
    if not manifest_path.is_file() or json.loads(manifest_path.read_text()) != fresh:
        stale.append(paths.BUILD_MANIFEST.as_posix())
    return stale
