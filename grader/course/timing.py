"""Where a grading run's time goes: each part timed, the serial ones told apart from the parallel.

The serial parts are what more machines cannot shorten, so `grade` prints their cost per
submission (benchmarks/scaling.py shows it does not grow with the class). What is done once per
run whatever the class (the course's set-up, when the assignment changed; the one histogram) is
shown on its own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

SERIAL, PARALLEL, ONCE = "serial", "in parallel", "once per run"


class Timer:
    def __init__(self) -> None:
        self.parts: dict[str, tuple[float, str]] = {}  # name -> (seconds, SERIAL, PARALLEL or ONCE)

    @contextmanager
    def __call__(self, name: str, parallel: bool = False, once: bool = False) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds, _ = self.parts.get(name, (0.0, ""))
            self.parts[name] = (seconds + time.perf_counter() - start, ONCE if once else PARALLEL if parallel else SERIAL)

    def seconds(self, kind: str) -> float:
        return sum(seconds for seconds, how in self.parts.values() if how == kind)

    def serial(self) -> float:
        """Seconds spent in the parts that ran in this process alone, for this run's students."""
        return self.seconds(SERIAL)

    def describe(self) -> str:
        return ", ".join(f"{name} {seconds:.2f} s{'' if how == SERIAL else ' ' + how}"
                         for name, (seconds, how) in self.parts.items())
