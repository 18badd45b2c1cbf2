"""Runs INSIDE the student's kernel, after their cells: call one probe and save what it returns.

The probe comes from a pristine copy of the checks library in the read-only /grader folder, loaded
under a private name, so a student who patched their own `w3d4_test` or `w3d4_checks` changes
nothing here. For the blocks whose numbers the grader checks, the grader's weights run
(weights_run.py, never released) follows the visible probe. What comes back is written as JSON
plus a safetensors file: plain data that cannot run code when the grader loads it.

Limits: this runs in the student's process, so their code can change anything here, and what
comes out is only as honest as that process. So nothing reported is taken on trust where it decides
points: judges outside regenerate every input from the seed and compare numbers with torch
built-ins where the lesson fixes the function, and for the blocks the grader recomputes the output
for its own weights (grader/grading/wiring.py). Forged numbers must be right numbers, which takes
correct code. tests/hostile/corpus.py keeps an attack that patches this runner
(`patches_probe_runner`).
"""

import json
import secrets
from pathlib import Path

CHECKS_DRIVER = True  # its frames are not the student's code (see w3d4_checks.probing)

HERE = Path(__file__).parent
CHECKS_PACKAGE = HERE / "w3d4_checks"


def _load():
    """Fresh copies for every probe, under names of their own: a student who planted modules under
    a fixed private name would otherwise choose the probe that runs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_w3d4_trusted_loader", HERE / "trusted.py")
    trusted = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trusted)
    private = f"_w3d4_grader_{secrets.token_hex(8)}"
    checks = trusted.load_package(private + "_checks", CHECKS_PACKAGE)
    return checks, trusted.load_module(private + "_weights", HERE / "weights_run.py")


def _to_plain(value, tensors: dict, path: str):
    """Replace tensors by {"__tensor__": key}; refuse anything that is not plain data."""
    import torch

    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().to("cpu").contiguous().clone()
        return {"__tensor__": path}
    if isinstance(value, dict):
        return {str(k): _to_plain(v, tensors, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v, tensors, f"{path}.{i}") for i, v in enumerate(value)]
    if value is None or type(value) in (bool, int, float, str):
        return value
    raise TypeError(f"a probe returned a {type(value).__name__}, which is not plain data")


def _unusual(checks) -> list:
    """The outputs of types the submission defined that redefine comparisons (see the checks'
    `unusual_returns`), as plain data for the integrity flags."""
    try:
        return [{"type": str(u["type"]), "tensor": bool(u["tensor"]), "redefines": [str(n) for n in u["redefines"]]}
                for u in checks.unusual_returns()]
    except Exception:  # changed by the student's code: it can hide a finding, not make one
        return []


def run_probe(namespace: dict, probe_json: str, out_dir: str) -> None:
    probe = json.loads(probe_json)
    out = Path(out_dir) / probe["check_id"]
    checks = None
    try:
        checks, weights_run = _load()
        missing = [name for name in probe["args"] if name not in namespace]
        if missing:
            raise AssertionError(f"{', '.join(missing)} is not defined: run the cell that defines it")
        objects = tuple(namespace[name] for name in probe["args"])
        data = weights_run.probe_with_weights(checks, probe["test"], objects, probe["seed"], probe["kwargs"])
        tensors: dict = {}
        plain = _to_plain(data, tensors, "data")
        if tensors:
            from safetensors.torch import save_file

            save_file(tensors, f"{out}.safetensors")
        result = {"ok": True, "data": plain}
    except AssertionError as error:
        result = {"ok": False, "error": str(error)}
    except BaseException as error:  # the student's code may raise anything, even SystemExit
        result = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    if checks is not None:
        result["unusual"] = _unusual(checks)
    Path(f"{out}.json").write_text(json.dumps(result))
