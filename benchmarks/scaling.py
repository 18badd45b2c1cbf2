"""How grading scales with the class: the sandbox step's cost, the serial work per submission, the
throughput of a Dask cluster with 1 and 2 workers, and a projection for 10,000 submissions.

    .venv/bin/python benchmarks/scaling.py [--sizes 7 50 200] [--cluster-class 8] [--no-cluster]

1. Sandbox step: the sample class (8 notebooks) graded from scratch with `--jobs 1`; its sandboxed
   runs and judging, per submission (core-seconds: one sandbox at a time).
2. Serial work: classes of 7, 50 and 200 copies of the sample notebooks, graded with the verdicts
   already made (copied from step 1, as a resumed run finds them), so that what is timed is
   everything but the sandboxes: the verdict cache, the gradebook, the reports (serial), intake,
   the autograded notebooks and feedback pages (in parallel, shown apart), and the histogram
   (once per run, shown apart). The course set-up
   (nbgrader's generate_assignment, once per course) is done beforehand and shown on its own.
3. Cluster: a real `dask scheduler` and 1, then 2, `dask worker` processes (one thread each) on
   127.0.0.1 grade a class of copies through `grade --scheduler`, verdicts made afresh: the
   sandboxes and then the feedback pages run on the workers.
4. Projection for 10,000 submissions on N workers, from those measured numbers: what stays on the
   instructor's machine with a cluster (the serial work, and intake and the autograded notebooks
   in parallel, `--jobs 2` here) times 10,000, plus the workers' share (sandboxes and feedback
   pages, as measured in step 3) divided among N workers at the measured two-worker efficiency.

The machine's cores bound step 3: with 2 cores, 2 workers on one machine are the most that can
show a speed-up. Worker machines add cores; nothing else changes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from grader import paths  # noqa: E402
from grader.course.grade import NOTEBOOK_ID, grade  # noqa: E402
from grader.course.timing import ONCE, PARALLEL, SERIAL, Timer  # noqa: E402
from grader.course.workspace import Workspace  # noqa: E402
from grader.grading.verdicts import Verdict, verdict_path  # noqa: E402

SAMPLE = sorted((paths.REPO / paths.SAMPLE_DIR).glob("*.ipynb"))
PROJECT_WORKERS = (1, 2, 10, 50, 100, 500)
ON_WORKERS = ("sandboxes", "feedback pages")  # the parts a cluster's workers do
HERE_IN_PARALLEL = ("intake", "autograded notebooks")  # the instructor machine's parallel parts


def quietly(function, *args, **kwargs):
    """Run a grading call without its table and progress bars on the terminal."""
    with open(os.devnull, "w") as null:
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = null
        try:
            return function(*args, **kwargs)
        finally:
            sys.stdout, sys.stderr = stdout, stderr


def copies(n: int, folder: Path) -> list[tuple[str, str]]:
    """n submissions made of the sample notebooks in turn; (student id, sample it copies)."""
    folder.mkdir(parents=True)
    made = []
    for i in range(n):
        source = SAMPLE[i % len(SAMPLE)]
        made.append((f"{source.stem}_{i:05d}", source.stem))
        shutil.copyfile(source, folder / f"{made[-1][0]}.ipynb")
    return made


def sandbox_step(scratch: Path) -> tuple[float, Workspace]:
    timer = Timer()
    out = scratch / "sample"
    quietly(grade, None, out, jobs=1, timer=timer)
    seconds, _ = timer.parts["sandboxes"]
    return seconds / len(SAMPLE), Workspace(out)


def serial_step(n: int, scratch: Path, graded: Workspace) -> Timer:
    made = copies(n, scratch / f"class{n}")
    workspace = Workspace(scratch / f"out{n}")
    workspace.setup()
    shutil.copyfile(graded.secret, workspace.secret)
    for sid, sample in made:  # the verdict a resumed run would find
        verdict = Verdict.load(verdict_path(graded.verdicts, sample, paths.ASSIGNMENT, NOTEBOOK_ID))
        verdict.student_id = sid
        verdict.save(verdict_path(workspace.verdicts, sid, paths.ASSIGNMENT, NOTEBOOK_ID))
    timer = Timer()
    quietly(grade, scratch / f"class{n}", workspace.out, jobs=2, timer=timer)
    return timer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*command: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(paths.REPO)}  # as the README starts workers: the checkout importable
    return subprocess.Popen([str(Path(sys.executable).parent / "dask"), *command], cwd=paths.REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)


def cluster_step(workers: int, n: int, scratch: Path) -> float:
    """Seconds for a class of n fresh submissions through a local cluster of `workers` workers."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = [start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")]
    try:
        processes += [start("worker", address, "--nthreads", "1", "--no-dashboard") for _ in range(workers)]
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        folder = scratch / f"cluster{workers}"
        copies(n, folder)
        timer = Timer()
        quietly(grade, folder, scratch / f"cluster{workers}-out", jobs=workers, scheduler=address, timer=timer)
        return sum(timer.parts[part][0] for part in ON_WORKERS)
    finally:
        for process in reversed(processes):
            stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[7, 50, 200])
    parser.add_argument("--cluster-class", type=int, default=8, help="submissions per cluster run")
    parser.add_argument("--no-cluster", action="store_true", help="skip the Dask cluster runs")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; sample class of {len(SAMPLE)} notebooks")
    with tempfile.TemporaryDirectory(prefix="w3d4-scaling-") as tmp:
        scratch = Path(tmp)
        setup = Timer()
        with setup("course set-up"):
            Workspace(scratch / "setup").setup()
        sandbox, graded = sandbox_step(scratch)
        print(f"\n1. Sandbox step: {sandbox:.2f} s per submission (sandboxed run and judging, one at a time)")
        print(f"   course set-up (once per course, nbgrader generate_assignment): {setup.serial():.2f} s")

        print("\n2. Serial work per submission (verdicts already made; parallel parts shown apart, --jobs 2)")
        print(f"   {'class':>6} {'serial ms/sub':>14} {'parallel ms/sub':>16}   serial parts (ms per submission)")
        serial, local = {}, {}
        for n in args.sizes:
            timer = serial_step(n, scratch, graded)
            serial[n] = timer.serial() / n
            parallel = timer.seconds(PARALLEL) / n
            local[n] = sum(timer.parts[part][0] for part in HERE_IN_PARALLEL) / n
            parts = ", ".join(f"{name} {1000 * s / n:.1f}" for name, (s, how) in timer.parts.items() if how == SERIAL)
            print(f"   {n:>6} {1000 * serial[n]:>14.1f} {1000 * parallel:>16.1f}   {parts}")
            parts = ", ".join(f"{name} {1000 * s / n:.1f}" for name, (s, how) in timer.parts.items() if how == PARALLEL)
            print(f"   {'':>6} {'':>14} {'':>16}   in parallel: {parts}")
            parts = ", ".join(f"{name} {s:.2f} s" for name, (s, how) in timer.parts.items() if how == ONCE)
            print(f"   {'':>6} {'':>14} {'':>16}   once per run: {parts}")
        largest = max(serial)

        if args.no_cluster:
            return
        n = args.cluster_class
        print(f"\n3. Dask cluster on 127.0.0.1 ({n} submissions, fresh verdicts, one thread per worker): "
              "sandboxes and feedback pages")
        seconds = {}
        for workers in (1, 2):
            seconds[workers] = cluster_step(workers, n, scratch)
            print(f"   {workers} worker(s): {seconds[workers]:.1f} s, {60 * n / seconds[workers]:.1f} submissions/minute")
        per_worker = seconds[1] / n
        efficiency = seconds[1] / (2 * seconds[2])
        print(f"   2 workers vs 1: {seconds[1] / seconds[2]:.2f}x ({100 * efficiency:.0f}% of linear)")

        print(f"\n4. Projection for 10,000 submissions: on the instructor's machine {1000 * serial[largest]:.1f} ms "
              f"serial and {1000 * local[largest]:.1f} ms in parallel per submission (class of {largest}); "
              f"{per_worker:.2f} s per submission on one worker; {100 * efficiency:.0f}% parallel efficiency")
        for workers in PROJECT_WORKERS:
            here = 10_000 * (serial[largest] + local[largest])
            total = here + 10_000 * per_worker / (workers * (efficiency if workers > 1 else 1.0))
            print(f"   {workers:>4} worker(s): {total / 3600:6.2f} h ({total / 60:7.1f} min, of which "
                  f"{here / 60:.1f} min on the instructor's machine)")


if __name__ == "__main__":
    main()
