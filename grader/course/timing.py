"""Where a grading run's time goes: each part timed, the serial ones told apart from the parallel.

The serial parts are what more machines cannot shorten, so `grade` prints their cost per
submission (benchmarks/scaling.py shows it does not grow with the class)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Timer:
    def __init__(self) -> None:
        self.parts: dict[str, tuple[float, bool]] = {}  # name -> (seconds, ran in parallel)

    @contextmanager
    def __call__(self, name: str, parallel: bool = False) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds, _ = self.parts.get(name, (0.0, parallel))
            self.parts[name] = (seconds + time.perf_counter() - start, parallel)

    def serial(self) -> float:
        """Seconds spent in the parts that ran in this process alone."""
        return sum(seconds for seconds, parallel in self.parts.values() if not parallel)

    def describe(self) -> str:
        return ", ".join(f"{name} {seconds:.2f} s{' in parallel' if parallel else ''}"
                         for name, (seconds, parallel) in self.parts.items())
