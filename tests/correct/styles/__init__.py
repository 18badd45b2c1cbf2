"""More correct styles, each as replacements of some of the solution's classes: SelfAttention
through Conv1d, ModuleDict, bmm with heads in the batch, F.multi_head_attention_forward,
nn.MultiheadAttention (wrapped or subclassed), bare parameters in several layouts, per-head layers;
GroupNorm through F.group_norm or F.layer_norm; embeddings in other layouts and conventions, from a
table or a frozen parameter; blocks with ModuleLists, functional layers, inlined attention, layers
created out of order; Unets that read `.device` off a parameter, keep skips in a deque, or hold
their parts in a ModuleDict.

`STYLES[name] = {class or function name: replacement source}` (attention.py, norms.py, blocks.py);
`build(replacements)` gives the
lesson's source with those definitions replaced. `SPILLS` are wrong answers to one exercise that
must cost that exercise only: the composite blocks built on them still pass.
"""

from __future__ import annotations

import re

# Names the replacements use beyond those the lesson imports.
HEADER = "import math\nimport torch\nimport torch.nn.functional as F\nfrom collections import deque, OrderedDict\n"


def replace_definition(source: str, name: str, new: str) -> str:
    """Replace the top-level class or def `name` (up to the next top-level definition or cell)."""
    match = re.search(rf"^(class|def) {name}\b.*?(?=^# %%|^(?:class|def) (?!{name}\b)\w)", source, re.S | re.M)
    if match is None:
        raise ValueError(f"no definition of {name} in the lesson source")
    return source[: match.start()] + new.strip("\n") + "\n\n\n" + source[match.end() :]


def build(source: str, replacements: dict[str, str]) -> str:
    for name, new in replacements.items():
        source = replace_definition(source, name, new)
    return source.replace('MAIN = __name__ == "__main__"', HEADER + 'MAIN = __name__ == "__main__"', 1)


from .attention import STYLES as _ATTENTION  # noqa: E402
from .blocks import STYLES as _BLOCKS  # noqa: E402
from .norms import STYLES as _NORMS  # noqa: E402
from .spills import SPILLS  # noqa: E402

STYLES: dict[str, dict[str, str]] = {**_ATTENTION, **_NORMS, **_BLOCKS}

__all__ = ["HEADER", "STYLES", "SPILLS", "build", "replace_definition"]
