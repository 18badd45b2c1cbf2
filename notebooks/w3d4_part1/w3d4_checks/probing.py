# Generated from checks/w3d4_checks/probing.py by `python -m grader build`: edit that file, not this one.
"""Running student code safely enough to report on it: seeded initialisers, errors as plain data,
outputs as detached CPU tensors, and the order in which a forward pass first uses each layer."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import linecache
import os
import sys
import sysconfig
import traceback
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .seeding import loss_weights


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


_LIBRARY_DIRS = tuple(
    os.path.realpath(path)
    for path in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], os.path.dirname(torch.__file__)}
)
_HERE = os.path.dirname(os.path.realpath(__file__))
# Modules outside this package that drive the checks (the tests module, the autograder's probe
# runner and weights run) say so with this global, so that their frames are not the student's.
OWN_CODE_MARK = "CHECKS_DRIVER"


def _is_student_frame(frame) -> bool:
    filename = frame.f_code.co_filename
    if filename.startswith("<") and "frozen" not in filename:
        return True  # code built from a string: a notebook cell or exec
    path = os.path.realpath(filename)
    own = path.startswith(_HERE + os.sep) or frame.f_globals.get(OWN_CODE_MARK) is True
    return not own and not path.startswith(_LIBRARY_DIRS) and "-packages" not in path


def _owner(qualname: str) -> str:
    """'GroupNorm.forward' -> 'GroupNorm'; 'swish' -> 'swish'; '<locals>' parts are skipped."""
    parts = [part for part in qualname.split(".") if part != "<locals>"]
    return parts[-2] if len(parts) >= 2 else parts[-1]


def _short_qualname(qualname: str) -> str:
    """'make.<locals>.GroupNorm.forward' -> 'GroupNorm.forward'."""
    return ".".join([part for part in qualname.split(".") if part != "<locals>"][-2:])


def _describe_error(exc: Exception) -> dict[str, str]:
    """Plain description of an exception: its type, message, and the student code that raised it."""
    frames = [(frame, line) for frame, line in traceback.walk_tb(exc.__traceback__) if _is_student_frame(frame)]
    origin = function = code = ""
    if frames:
        frame, line = frames[-1]
        origin, function = _owner(frame.f_code.co_qualname), _short_qualname(frame.f_code.co_qualname)
        code = linecache.getline(frame.f_code.co_filename, line).strip()
    return {"type": type(exc).__name__, "message": str(exc)[:600], "origin": origin, "function": function, "code": code}


@contextlib.contextmanager
def _controlled_state(seed: int) -> Iterator[None]:
    """Seed torch for the student's initialisers; afterwards restore the caller's random state and
    TF32 flags. TF32 is off so that CUDA results are as exact as CPU ones."""
    cuda = torch.cuda.is_available()
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        torch.manual_seed(int.from_bytes(hashlib.sha256(f"{seed}/init".encode()).digest()[:4], "little"))
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def run_probe(run: Callable[[dict, str], None], seed: int, device: Optional[str]) -> dict:
    """Run one probe body; an exception from student code ends it and is recorded as plain data.

    `run(data, device)` fills `data`, setting data["stage"] before each call into student code."""
    data: dict[str, Any] = {"stage": "starting"}
    with _controlled_state(seed):
        try:
            run(data, str(device or default_device()))
        except Exception as exc:  # student code may raise anything; the judge explains it
            data["error"] = _describe_error(exc)
    return data


# What a class of the submission's may redefine to pass for the expected output: comparisons, truth,
# conversions, torch's overrides, and (on a tensor subclass) the methods a test compares with.
DISGUISES = frozenset({
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__float__", "__int__", "__index__",
    "__torch_function__", "__torch_dispatch__", "__getattr__", "__getattribute__",
})
TENSOR_DISGUISES = DISGUISES | {
    "__abs__", "__sub__", "__rsub__", "__array__", "allclose", "isclose", "equal", "eq", "ne", "sub", "abs", "max",
    "item", "tolist", "numpy", "detach", "to", "cpu", "clone", "as_subclass", "float", "double",
}
MAX_UNUSUAL = 20
_unusual: list[dict] = []  # see unusual_returns


def _defined_by_submission(cls: type) -> bool:
    """A class that is not Python's, torch's or an installed library's (a notebook cell's, say)."""
    module = cls.__module__ or ""
    if module.split(".")[0] in sys.stdlib_module_names or module.split(".")[0] in ("builtins", "torch"):
        return False
    path = os.path.realpath(getattr(sys.modules.get(module), "__file__", None) or "<none>")
    return not (path.startswith(_LIBRARY_DIRS) or "-packages" in path)


def _note_unusual(value: Any) -> None:
    """Remember an output of a type the submission defined that redefines how it compares or converts
    (an always-equal object): the autograder shows it as an integrity flag. Honest outputs of the
    wrong type (a tuple, None, a module, an array) are torch's, numpy's or plain classes'."""
    cls = type(value)
    is_tensor = isinstance(value, torch.Tensor)
    if len(_unusual) >= MAX_UNUSUAL or (is_tensor and cls in (torch.Tensor, nn.Parameter)):
        return
    try:
        if dataclasses.is_dataclass(cls):
            return  # its generated __eq__ compares fields: no disguise
        watched = TENSOR_DISGUISES if is_tensor else DISGUISES
        own = [c for c in cls.__mro__ if c is not object and _defined_by_submission(c)]
        redefined = sorted({name for c in own for name in vars(c) if name in watched})
    except Exception:  # a class built to confuse inspection: say nothing rather than guess
        return
    if redefined:
        record = {"type": cls.__name__[:100], "tensor": is_tensor, "redefines": redefined}
        if record not in _unusual:
            _unusual.append(record)


def unusual_returns() -> list[dict]:
    """The outputs `plain` saw since this package was loaded whose type the submission defined and
    which redefine comparisons or conversions: [{"type", "tensor", "redefines"}]. The autograder loads
    the package afresh for each probe, so there they are that probe's."""
    return [dict(record) for record in _unusual]


def plain(value: Any) -> Any:
    """A returned tensor as a detached CPU tensor, anything else as a short description."""
    _note_unusual(value)
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").as_subclass(torch.Tensor).clone()
    return f"a {type(value).__name__}"


def count_params(module: nn.Module) -> int:
    """Trainable parameters: a frozen table (a buffer kept as a Parameter) is no layer."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def param_shapes(module: nn.Module) -> list[list]:
    """[name, shape] of every parameter."""
    return [[name, list(p.shape)] for name, p in module.named_parameters() if p.requires_grad]


def backprop(
    module: nn.Module, outputs: list[torch.Tensor], seed: int, tag: str, used: Optional[set] = None
) -> list[str]:
    """Backpropagate a seeded weighted sum of the outputs; return the parameters left without grad
    (of those whose ids are in `used`, when given: a layer that forward never calls is no mistake)."""
    module.zero_grad(set_to_none=True)
    weights = loss_weights(seed, tag, [tuple(out.shape) for out in outputs])
    loss = sum((out * w.to(out.device)).sum() for out, w in zip(outputs, weights))
    loss.backward()
    return [
        name
        for name, p in module.named_parameters()
        if p.requires_grad and p.grad is None and (used is None or id(p) in used)
    ]


def is_a(module: nn.Module, class_name: str) -> bool:
    """Whether the module is an instance of the lesson's class of that name (or of a subclass)."""
    return any(cls.__name__ == class_name for cls in type(module).__mro__)


def is_attention(module: nn.Module) -> bool:
    """A self-attention, recognised by the lesson's class name (whatever its projections are called)."""
    return is_a(module, "SelfAttention")


def is_norm(module: nn.Module) -> bool:
    """A GroupNorm, torch's or the lesson's (not an attention that happens to derive from one)."""
    grouped = isinstance(module, nn.GroupNorm) or is_a(module, "GroupNorm")
    return grouped and not (is_a(module, "AttentionBlock") or is_attention(module))


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)


class FirstUse(TorchFunctionMode):
    """Notes the layers in the order in which a torch operation that computes a tensor first uses one
    of their parameters, so that a layer counts whether it is called as a module or its weight goes
    to F.conv2d (reading `.shape` or `.device` is no use). With `capture` (a parameter), also keeps
    the first other tensor of the first operation that uses it or a view of it (`weight.T`): the
    input of that layer."""

    def __init__(self, units: list, capture: Optional[torch.Tensor] = None):
        super().__init__()
        self.owner = {id(p): unit for unit in units for p in unit.parameters() if p.requires_grad}
        self.order: list = []
        self._seen: set[int] = set()
        self.capture, self.captured = capture, None
        self._aliases: list[torch.Tensor] = [] if capture is None else [capture]  # kept alive: ids stay theirs

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if not any(True for _ in tensors_in(result)):
            return result
        tensors = list(tensors_in((args, kwargs)))
        for tensor in tensors:
            unit = self.owner.get(id(tensor))
            if unit is not None and id(unit) not in self._seen:
                self._seen.add(id(unit))
                self.order.append(unit)
        if self.captured is None and any(any(t is a for a in self._aliases) for t in tensors):
            others = [t for t in tensors if not isinstance(t, nn.Parameter) and not any(t is a for a in self._aliases)]
            if others:
                self.captured = others[0]
            elif isinstance(result, torch.Tensor):
                self._aliases.append(result)
        return result


def plain_pair(value: Any) -> Any:
    """A block's (output, skip) pair as two plain tensors, or a description of what came back."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return [plain(value[0]), plain(value[1])]
    _note_unusual(value)
    size = f" of length {len(value)}" if isinstance(value, (tuple, list)) else ""
    return f"a {type(value).__name__}{size}"
