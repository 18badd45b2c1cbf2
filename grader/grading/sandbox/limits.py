"""Set the sandbox's rlimits, then become the kernel: `python limits.py '{"RLIMIT_AS": ...}' -- CMD...`.

Soft and hard limits are set equal, so the student's code, which inherits them, cannot raise
them again. Limits the platform refuses (macOS has no RLIMIT_AS to speak of) are skipped: the
grader's timeouts still hold there.
"""

import json
import os
import resource
import sys


def main() -> None:
    limits, separator, command = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if separator != "--" or not command:
        sys.exit("usage: limits.py LIMITS_JSON -- COMMAND...")
    for name, value in limits.items():
        if hasattr(resource, name):
            try:
                resource.setrlimit(getattr(resource, name), (value, value))
            except (ValueError, OSError):
                pass
    # jupyter_client tells the kernel its parent's PID to watch; inside a PID namespace that process
    # is not visible, and the kernel would conclude its parent had died and exit.
    os.environ.pop("JPY_PARENT_PID", None)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
