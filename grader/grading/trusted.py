"""Load a pristine copy of the checks library (or another module) under a private name.

Both sides of grading use it: the grader's process, and the probe runner inside the student's
kernel, where this file is copied beside the runner. A private name means that what a notebook put
in sys.modules under the public names (`w3d4_checks`, `w3d4_test`) plays no part. Kept free of
imports from the grader's package, so that it runs in the sandbox as it is.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_module(name: str, path: Path) -> ModuleType:
    """The module in file `path`, run afresh under `name`."""
    return _load(name, importlib.util.spec_from_file_location(name, path))


def load_package(name: str, folder: Path) -> ModuleType:
    """The package in `folder`, run afresh under `name`."""
    return _load(name, importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    ))


def _load(name: str, spec) -> ModuleType:
    """Run a module from its spec. It and its submodules are in sys.modules only while it runs
    (relative imports and dataclasses look them up there); entries planted before are dropped."""
    ours = lambda: [key for key in sys.modules if key == name or key.startswith(name + ".")]
    for key in ours():
        del sys.modules[key]
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        for key in ours():
            del sys.modules[key]
    return module
