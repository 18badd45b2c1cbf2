"""What the hostile tests watch from outside the sandbox: a network listener, and the processes
that sandboxed kernels leave behind."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from grader.grading.sandbox import SANDBOX_UID


class Listener:
    """A TCP server on every interface; it records whoever connects."""

    def __init__(self):
        self.sock = socket.create_server(("0.0.0.0", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.peers: list = []
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                continue
            self.peers.append(peer)
            conn.close()

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def host_ip() -> str:
    """This machine's address on its network (no packet is sent), or loopback without one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def sandbox_processes(marker: str = "w3d4-sb-") -> list[str]:
    """Processes run as one of the sandbox's users, or with `marker` on their command line."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            uid = int(next(line for line in (proc / "status").read_text().splitlines() if line.startswith("Uid:")).split()[1])
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, StopIteration):
            continue  # gone meanwhile
        if SANDBOX_UID <= uid < SANDBOX_UID + 64 or (marker and marker in cmdline):
            found.append(f"pid {proc.name} uid {uid}: {cmdline[:120]}")
    return found
