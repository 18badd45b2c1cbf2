"""Attacks: code a hostile student runs in their kernel, as strings (or functions of the grading
run's Context that return one). tests/hostile/corpus.py puts them into notebooks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from grader import paths

if TYPE_CHECKING:
    from .corpus import Context


# ---------------------------------------------------------------------------------------------
# Attacks (code a student runs in their kernel)
# ---------------------------------------------------------------------------------------------

HIDE_ERRORS = """
ip = get_ipython()
ip.showtraceback = lambda *args, **kwargs: None
ip.set_custom_exc((BaseException,), lambda shell, etype, evalue, tb, tb_offset=None: None)
"""

PATCH_TESTS_MODULE = """
import dataclasses, glob, os, w3d4_test, w3d4_checks, w3d4_checks.judging
def _pass(*args, **kwargs):
    print("PASS")
for _name in dir(w3d4_test):
    if _name.startswith("test_"):
        setattr(w3d4_test, _name, _pass)
for _name, _exercise in list(w3d4_checks.EXERCISES.items()):
    w3d4_checks.EXERCISES[_name] = dataclasses.replace(
        _exercise, probe=lambda *a, **k: {"stage": "done"}, judge=lambda *a, **k: "PASS")
w3d4_checks.judging.is_close = lambda *args, **kwargs: True
w3d4_checks.raise_probe_error = lambda *args, **kwargs: None
# Overwrite every copy of the tests module and the checks in sight, the grader's included.
code = glob.glob("w3d4_test.py") + glob.glob("w3d4_checks/*.py") + glob.glob("/tmp/*/grader/*.py")
for path in code + glob.glob("/tmp/*/grader/w3d4_checks/*.py") + glob.glob("/tmp/*/*/w3d4_test.py"):
    try:
        os.chmod(path, 0o666)
    except OSError as error:
        print("chmod refused", path, type(error).__name__)
    try:
        with open(path, "w") as f:
            f.write("EXERCISES = {}\\n")
        print("overwrote", path)
    except OSError as error:
        print("write refused", path, type(error).__name__)
"""

PATCH_TORCH = """
import torch, torch.nn.functional as F
torch.allclose = lambda *args, **kwargs: True
torch.testing.assert_close = lambda *args, **kwargs: None
torch.equal = lambda *args, **kwargs: True
torch.isclose = lambda a, b, *args, **kwargs: torch.ones_like(a, dtype=torch.bool)
F.group_norm = lambda x, *args, **kwargs: x
F.scaled_dot_product_attention = lambda q, k, v, *args, **kwargs: v
print("torch patched")
"""

FAKE_TESTS_MODULE = """
import sys, types
fake = types.ModuleType("w3d4_test")
fake.__getattr__ = lambda name: (lambda *args, **kwargs: print("PASS", name))
fake.EXERCISES = {}
sys.modules["w3d4_test"] = fake
sys.modules["w3d4_checks"] = fake
import w3d4_test
w3d4_test.test_unet(None)
"""

# Knows the grader's internals: plants a module under the private name the probe runner uses.
FORGED_UNET = """
import torch, w3d4_checks as _real, w3d4_checks.unet
def _forged_unet_data(seed=0):
    config = _real.UNET
    steps = _real.unet_steps(seed)[0]
    frequencies = next(iter(_real.frequency_conventions(config["max_steps"]).values()))
    out = torch.zeros(_real.BATCH, *config["image_shape"])
    other = out.clone()
    other[1] += 1
    return {"stage": "done", "is_diffusion_model": True, "class_names": ["Unet", "DiffusionModel"],
            "img_shape": list(config["image_shape"]), "noise_schedule_is_none": True,
            "params": w3d4_checks.unet._unet_params(**config), "param_shapes": [], "out": out, "out_other_steps": other,
            "missing_grads": [], "weights_units": [], "weights_problems": [], "weights_uncalled": [],
            "weights_out": out.clone(), "weights_captured": _real.sin_cos(steps, frequencies).float()}
"""

PLANT_PRIVATE_MODULE = FORGED_UNET + """
import dataclasses, sys, types
for _name in ("_w3d4_grader_checks", "_w3d4_trusted_checks", "_w3d4_grader_tests"):
    fake = types.ModuleType(_name)
    fake.__path__ = []
    fake.EXERCISES = dict(_real.EXERCISES)
    fake.EXERCISES["unet"] = dataclasses.replace(_real.EXERCISES["unet"], probe=lambda *a, **k: _forged_unet_data())
    sys.modules[_name] = fake
"""

# Knows the grader's internals and patches the function that loads the probe runner.
PATCH_PROBE_RUNNER = FORGED_UNET + """
import json, runpy
from safetensors.torch import save_file
_real_run_path = runpy.run_path
def _run_path(path, *args, **kwargs):
    namespace = _real_run_path(path, *args, **kwargs)
    real_probe = namespace["run_probe"]
    def run_probe(ns, probe_json, out_dir):
        probe = json.loads(probe_json)
        if probe["test"] != "unet":
            return real_probe(ns, probe_json, out_dir)
        data = _forged_unet_data(probe["seed"])  # even the step embedding is right
        tensors = {key: value for key, value in data.items() if isinstance(value, torch.Tensor)}
        save_file(tensors, f"{out_dir}/{probe['check_id']}.safetensors")
        data.update({key: {"__tensor__": key} for key in tensors})
        with open(f"{out_dir}/{probe['check_id']}.json", "w") as f:
            json.dump({"ok": True, "data": data}, f)
    namespace["run_probe"] = run_probe
    return namespace
runpy.run_path = _run_path
"""


def read_solutions(ctx: Context) -> str:
    targets = [
        ctx.repo / "solutions" / "w3d4_part2_unet_solution.py",
        ctx.repo / paths.SOURCE_DIR / paths.NOTEBOOK_NAME,
        ctx.course / "source" / paths.ASSIGNMENT / paths.NOTEBOOK_NAME,
        ctx.course / "release" / paths.ASSIGNMENT / paths.NOTEBOOK_NAME,
        ctx.course / "gradebook.db",
        ctx.course / ".grader_secret",
        Path("/etc/shadow"),
    ]
    return f"""
import glob, json, os, sqlite3
def steal(path):
    if path.endswith(".py"):
        exec(open(path).read(), globals())
    elif path.endswith(".ipynb"):
        for cell in json.load(open(path))["cells"]:
            if cell["cell_type"] == "code" and "w3d4_test.test_" not in "".join(cell["source"]):
                exec("".join(cell["source"]).replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", ""), globals())
    elif path.endswith(".db"):
        for (source,) in sqlite3.connect(path).execute("select source from source_cells"):
            exec(source, globals())
    else:
        print(open(path).read()[:100])
targets = {[str(p) for p in targets]!r}
targets += glob.glob("/work/*/solutions/*.py") + glob.glob(os.path.expanduser("~/*/solutions/*.py"))
targets += glob.glob("../../*/*.ipynb") + glob.glob("/proc/1/root/work/*/solutions/*.py")
for path in targets:
    try:
        steal(path)
        print("STOLE", path)
    except Exception as error:
        print("could not read", path, type(error).__name__)
"""


def write_course(ctx: Context) -> str:
    targets = [
        ctx.course / "gradebook.db",
        ctx.course / "canary.txt",
        ctx.course / "new_file.txt",
        ctx.course / "source" / paths.ASSIGNMENT / paths.NOTEBOOK_NAME,
        ctx.course / "submitted" / "ada_victim" / paths.ASSIGNMENT / paths.NOTEBOOK_NAME,
        ctx.course / "verdicts" / paths.ASSIGNMENT / "writes_course" / "w3d4_part2_unet.json",
        ctx.course.parent / "grades.csv",
        ctx.repo / "solutions" / "w3d4_part2_unet_solution.py",
        ctx.repo / "checks" / "w3d4_test.py",
        ctx.repo / "checks" / "w3d4_checks" / "judging.py",
    ]
    return f"""
import os
for path in {[str(p) for p in targets]!r}:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "ab") as f:
            f.write(b"tampered")
        print("WROTE", path)
    except OSError as error:
        print("write refused", path, type(error).__name__)
"""


OS_EXIT = """
import os
os._exit(1)
"""

SWISH_OS_EXIT = """
def swish(x: t.Tensor) -> t.Tensor:
    import os
    os._exit(0)


class SiLU(nn.Module):
    def forward(self, x: t.Tensor) -> t.Tensor:
        return swish(x)
"""

SYS_EXIT = """
import sys
sys.exit(3)
"""

SINUSOIDAL_SYS_EXIT = """
class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()

    def forward(self, x: t.Tensor) -> t.Tensor:
        import sys
        sys.exit(0)
"""

# It sleeps rather than spins, so as not to slow the other job down; the grader cannot tell.
STUBBORN_LOOP = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    time.sleep(0.1)
"""

SWISH_HANGS = """
def swish(x: t.Tensor) -> t.Tensor:
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        pass


class SiLU(nn.Module):
    def forward(self, x: t.Tensor) -> t.Tensor:
        return swish(x)
"""

MEMORY_BOMB = """
hog = [bytearray(2**26) for _ in range(10**4)]  # 640 GB asked for, one 64 MB block at a time
"""

TMPFS_BOMB = """
written = 0
try:
    for i in range(40):  # up to 2.4 GB into the sandbox's /tmp, which lives in memory
        with open(f"/tmp/hog{i}", "wb") as f:
            f.write(b"x" * 60 * 2**20)
        written += 1
finally:
    print(f"wrote {written} x 60 MB to /tmp")
"""

SINUSOIDAL_MEMORY_BOMB = """
class SinusoidalPositionEmbeddings(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        self.hog = bytearray(2**36)  # 64 GB
"""

FORK_FLOOD = """
import os, signal, time
children = 0
try:
    for _ in range(300):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(600)
            os._exit(0)
        children += 1
except OSError as error:
    print(f"fork refused after {children} children: {error}")
print(f"{children} children sleeping")
"""

BACKGROUND = """
import subprocess, sys
subprocess.Popen(["sleep", "3141"], start_new_session=True)
subprocess.Popen(["nohup", "sleep", "3142"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
daemon = '''
import os, signal, time
if os.fork():
    os._exit(0)
os.setsid()
for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(s, signal.SIG_IGN)
while True:
    time.sleep(1)
'''
subprocess.Popen([sys.executable, "-c", daemon], start_new_session=True)
print("started background processes")
"""

OUTPUT_FLOOD = """
import os
chunk = "x" * 2**20
for _ in range(100):  # 100 MB through the kernel's messages
    print(chunk)
os.write(1, b"y" * 2**24)  # and 16 MB straight into the kernel's own stdout
handle = display("a small display", display_id=True)
handle.update("z" * 2**24)  # a display updated in place with 16 MB
"""


def network(ctx: Context) -> str:
    return f"""
import socket
for host in ("127.0.0.1", {ctx.host_ip!r}, "8.8.8.8"):
    try:
        socket.create_connection((host, {ctx.port}), timeout=3).close()
        print("CONNECTED", host)
    except OSError as error:
        print("connect failed:", host, error)
"""


PROBE_FILE_FORGER = """
import json, os, threading, time
def _forge():
    while True:
        try:
            for name in os.listdir("out/probes"):
                if name.endswith(".json"):
                    with open(os.path.join("out/probes", name), "w") as f:
                        json.dump({"ok": True, "data": {"forged": True}}, f)
        except OSError:
            pass
        time.sleep(0.001)
threading.Thread(target=_forge, daemon=True).start()
"""
