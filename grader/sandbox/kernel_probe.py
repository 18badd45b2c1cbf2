"""Runs INSIDE the student's kernel, after their cells: call one probe and save what it returns.

The probe comes from a pristine copy of the tests module in the read-only /grader folder, loaded
under a private name, so a student who patched their own `w3d4_test` changes nothing here. What
the probe returns is written as JSON plus a safetensors file: plain data that cannot run code
when the grader loads it.

Limits: this runs in the student's process, so their code can change anything here, and what
comes out is only as honest as that process. So nothing reported is taken on trust where it decides
points: judges outside regenerate every input from the seed and compare numbers with torch
built-ins where the lesson fixes the function, and for the blocks the grader recomputes the output
for its own weights with grader/reference.py. Forged numbers must be right numbers, which takes
correct code. tests/hostile/corpus.py keeps an attack that patches this runner
(`patches_probe_runner`).
"""

import importlib.util
import json
from pathlib import Path

TESTS_MODULE = Path(__file__).with_name("w3d4_test.py")
PRIVATE_NAME = "_w3d4_grader_tests"


def _load_tests():
    """A fresh copy for every probe, never looked up in (or added to) sys.modules: a student who
    planted a module under this private name would otherwise choose the probe that runs."""
    spec = importlib.util.spec_from_file_location(PRIVATE_NAME, TESTS_MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def run_probe(namespace: dict, probe_json: str, out_dir: str) -> None:
    probe = json.loads(probe_json)
    out = Path(out_dir) / probe["check_id"]
    try:
        tests = _load_tests()
        missing = [name for name in probe["args"] if name not in namespace]
        if missing:
            raise AssertionError(f"{', '.join(missing)} is not defined: run the cell that defines it")
        objects = [namespace[name] for name in probe["args"]]
        data = tests.TESTS[probe["test"]][0](*objects, seed=probe["seed"], **probe["kwargs"])
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
    Path(f"{out}.json").write_text(json.dumps(result))
