"""Sandbox slots shared by every grading process on one machine.

A slot picks the sandbox's user (SANDBOX_UID + slot): its process limit, and the processes the
sandbox waits for after a kernel is killed. Two kernels under one user at once would share that
limit, and each would wait for the other's processes. Local grading's threads, two grading runs,
and the processes of a Dask worker (or two workers on one machine) all run sandboxes, so a slot is
held with an exclusive `flock` on a lock file of its own: the lock is per open file, so threads
exclude each other too, and the kernel drops it when a process dies, even by SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SLOTS = 64  # the sandbox users SANDBOX_UID .. SANDBOX_UID + 63, the range the hostile tests watch
POLL_S = 0.2


def lock_dir() -> Path:
    """A folder of lock files private to this user: in a shared /tmp, another user's folder (or a
    link planted there) could hold every slot, or point the lock files elsewhere."""
    folder = Path(tempfile.gettempdir()) / f"w3d4-slots-{os.geteuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise RuntimeError(f"{folder} is not a private folder of this user: remove it and grade again")
    return folder


def _try_lock(folder: Path, slot: int) -> int | None:
    """An open descriptor holding slot's lock, or None while another holds it."""
    fd = os.open(folder / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextmanager
def machine_slot() -> Iterator[int]:
    """The lowest slot no other sandbox on this machine holds, held until the block ends."""
    folder = lock_dir()
    while True:
        for slot in range(SLOTS):
            fd = _try_lock(folder, slot)
            if fd is not None:
                try:
                    yield slot
                finally:
                    os.close(fd)  # closing the only descriptor releases the lock
                return
        time.sleep(POLL_S)
