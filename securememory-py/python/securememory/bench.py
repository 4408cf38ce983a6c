"""What the Python binding adds to the Rust library, measured side by side: ``python -m securememory.bench``.

Each Python case is timed in batches; between repetitions, the Rust figures for the same work are measured again
by the command-line tool (``securememory bench --json``, from the ``securememory-cli`` crate), so both see the same
machine load. Every figure is the median over the repetitions. The table shows the Python figure, the Rust one,
what the binding adds and how that compares with the goal. It only reports: no result is a failure.

The Rust tool is found through ``--cli PATH``, the ``SECUREMEMORY_CLI`` environment variable, or ``securememory``
on ``PATH`` (build it with ``cargo build --release -p securememory-cli``). Without it the Python figures are still
printed, and the rows that need a Rust baseline say so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Type, Union

import securememory

SIZE = 32
THREADS = 4

#: Runs a batch of about `iters` operations and returns how many it ran.
Run = Callable[[int], int]
FactoryClass = Union[
    Type[securememory.ProtectedMemorySecretFactory],
    Type[securememory.MemguardSecretFactory],
    Type[securememory.SealedSecretFactory],
]


@dataclass
class Case:
    """One Python workload, the Rust row (or Python case) it is compared with, and the goal."""

    name: str
    make: Callable[[], Run]
    baseline: str
    #: The goal as "at most the baseline plus this many nanoseconds" ...
    allowance_ns: Optional[float] = None
    #: ... or as "at most this many times the baseline".
    ratio: Optional[float] = None
    #: Batches this many times longer than the others (the threads case needs time to reach its steady state).
    batch_scale: float = 1.0
    iters: int = 0
    samples: list[float] = field(default_factory=list)
    cpu_samples: list[float] = field(default_factory=list)

    def goal(self) -> str:
        if self.allowance_ns is not None:
            return f"<= {self.baseline} + {self.allowance_ns / 1000:.1f} us"
        return f"<= {self.ratio:.2f} x {self.baseline}"


def _read_first(view: memoryview) -> int:
    return view[0]


def _with_bytes(flavour: FactoryClass) -> Callable[[], Run]:
    """`with_bytes` on one secret, the callback reading its first byte (the Rust case's `black_box(b[0])`)."""

    def make() -> Run:
        secret = flavour().create_random(SIZE)
        read = _read_first

        def run(iters: int) -> int:
            for _ in range(iters):
                secret.with_bytes(read)
            return iters

        return run

    return make


def _with_bytes_threads(threads: int) -> Callable[[], Run]:
    """`threads` threads calling `with_bytes` on one secret; a batch of `iters` is split between them.

    The threads are started once (daemons, parked between batches), so a batch times only the calls.
    """

    def make() -> Run:
        secret = securememory.ProtectedMemorySecretFactory().create_random(SIZE)
        share = [0]
        start = threading.Barrier(threads + 1)
        done = threading.Barrier(threads + 1)

        def work() -> None:
            while True:
                start.wait()
                for _ in range(share[0]):
                    secret.with_bytes(_read_first)
                done.wait()

        for _ in range(threads):
            threading.Thread(target=work, daemon=True).start()

        def run(iters: int) -> int:
            share[0] = max(1, iters // threads)
            start.wait()
            done.wait()
            return share[0] * threads

        return run

    return make


def _new_close(flavour: FactoryClass) -> Callable[[], Run]:
    """`new(bytearray(32))` then `close()`."""

    def make() -> Run:
        factory = flavour()

        def run(iters: int) -> int:
            for _ in range(iters):
                factory.new(bytearray(SIZE)).close()
            return iters

        return run

    return make


def _create_random_close(flavour: FactoryClass) -> Callable[[], Run]:
    """`create_random(32)` then `close()`."""

    def make() -> Run:
        factory = flavour()

        def run(iters: int) -> int:
            for _ in range(iters):
                factory.create_random(SIZE).close()
            return iters

        return run

    return make


#: The flavours, by the names the Rust rows use. A new flavour is one more entry here.
FLAVOURS: dict[str, FactoryClass] = {
    "protected_memory": securememory.ProtectedMemorySecretFactory,
    "memguard": securememory.MemguardSecretFactory,
    "sealed": securememory.SealedSecretFactory,
}


def cases() -> list[Case]:
    """Every case, in table order. Names match the Rust rows of ``securememory bench``."""
    result: list[Case] = []
    for operation, make, allowance_ns in (
        ("with_bytes", _with_bytes, 1000.0),
        ("new_close", _new_close, 1500.0),
        ("create_random_close", _create_random_close, 1500.0),
    ):
        for name, flavour in FLAVOURS.items():
            result.append(
                Case(
                    f"{operation}/{name}",
                    make(flavour),
                    f"rust {operation}/{name}",
                    allowance_ns=allowance_ns,
                )
            )
    result.append(
        Case(
            f"with_bytes/{THREADS}_threads_one_secret",
            _with_bytes_threads(THREADS),
            "python with_bytes/protected_memory",
            ratio=1.0,
            batch_scale=4.0,
        )
    )
    return result


def _time(run: Run, iters: int) -> tuple[float, float]:
    """Nanoseconds per operation of one batch: wall clock, and CPU time of the process (all its threads), which
    leaves out time spent preempted by other work on a shared machine."""
    cpu = time.process_time_ns()
    start = time.perf_counter_ns()
    ran = run(iters)
    wall = time.perf_counter_ns() - start
    return wall / ran, (time.process_time_ns() - cpu) / ran


def _calibrate(run: Run, batch_ns: float, floor: int) -> int:
    """Iterations that take about `batch_ns`, found by doubling (which also warms up)."""
    iters = 1
    while True:
        took = _time(run, iters)[0] * iters
        if took >= batch_ns / 4 or iters >= 1 << 24:
            return max(floor, int(batch_ns / max(took / iters, 1.0)))
        iters *= 2


def find_cli(explicit: Optional[str]) -> Optional[str]:
    """The ``securememory`` command-line tool: ``--cli``, ``$SECUREMEMORY_CLI``, or ``securememory`` on PATH."""
    for candidate in (explicit, os.environ.get("SECUREMEMORY_CLI")):
        if candidate:
            return candidate
    return shutil.which("securememory")


#: The Rust rows needed, fetched with two filters per repetition.
RUST_FILTERS = ("with_bytes/", "close/")


def rust_figures(cli: str, quick: bool) -> dict[str, float]:
    """One repetition of the Rust rows: ``{"rust <row name>": wall ns per operation, "rust cpu <row name>": CPU ns
    per operation}``."""
    figures: dict[str, float] = {}
    for text in RUST_FILTERS:
        command = [cli, "bench", "--json", "--reps", "1", "--filter", text]
        if quick:
            command.append("--quick")
        out = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True).stdout
        for line in out.splitlines():
            row = json.loads(line)
            if row.get("ns_per_op") is not None:
                figures[f"rust {row['name']}"] = float(row["ns_per_op"])
            if row.get("cpu_ns_per_op") is not None:
                figures[f"rust cpu {row['name']}"] = float(row["cpu_ns_per_op"])
    return figures


def _micro(ns: Optional[float]) -> str:
    return "-" if ns is None else f"{ns / 1000:.2f} us"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m securememory.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--cli", help="path of the securememory command-line tool (the Rust baselines)")
    parser.add_argument("--reps", type=int, default=7, help="repetitions each median is taken over (default 7)")
    parser.add_argument("--batch-ms", type=float, default=100.0, help="length of one timed batch (default 100)")
    parser.add_argument("--quick", action="store_true", help="3 repetitions of 25 ms batches")
    parser.add_argument("--smoke", action="store_true", help="one short repetition: checks that it runs")
    parser.add_argument("--filter", default="", help="only the cases whose name contains this text")
    parser.add_argument("--json", action="store_true", help="also print one JSON object per case")
    args = parser.parse_args(argv)
    reps, batch_ms = args.reps, args.batch_ms
    if args.quick:
        reps, batch_ms = 3, 25.0
    if args.smoke:
        reps, batch_ms = 1, 2.0
    selected = [case for case in cases() if args.filter in case.name]
    cli = find_cli(args.cli)
    rust: dict[str, list[float]] = {}
    rust_error: Optional[str] = None
    if cli is None:
        rust_error = (
            "no Rust baseline: the securememory command-line tool was not found (pass --cli PATH, set "
            "SECUREMEMORY_CLI, or put it on PATH; build it with `cargo build --release -p securememory-cli`)"
        )
    runs: dict[str, Run] = {}
    for case in list(selected):
        try:
            runs[case.name] = case.make()
        except OSError as error:
            print(f"{case.name}: cannot run here ({error})")
            selected.remove(case)
    for case in selected:
        case.iters = _calibrate(runs[case.name], batch_ms * case.batch_scale * 1e6, 1 if args.smoke else 100)
    started = time.monotonic()
    for rep in range(reps):
        print(f"bench: repetition {rep + 1}/{reps}", file=sys.stderr, flush=True)
        for case in selected:
            wall, cpu = _time(runs[case.name], case.iters)
            case.samples.append(wall)
            case.cpu_samples.append(cpu)
        if cli is not None and rust_error is None:
            try:
                for name, ns in rust_figures(cli, quick=args.quick or args.smoke).items():
                    rust.setdefault(name, []).append(ns)
            except (OSError, subprocess.SubprocessError, ValueError) as error:
                rust_error = f"no Rust baseline: running {cli} failed: {error}"
    medians = {case.name: statistics.median(case.samples) for case in selected}
    cpu_medians = {case.name: statistics.median(case.cpu_samples) for case in selected}
    baselines = {name: statistics.median(values) for name, values in rust.items()}
    baselines.update({f"python {name}": ns for name, ns in medians.items()})
    baselines.update({f"python cpu {name}": ns for name, ns in cpu_medians.items()})

    header = ("case", "python", "baseline", "baseline ns", "added", "ratio", "cpu added", "goal", "result")
    rows: list[tuple[str, ...]] = []
    for case in selected:
        ns, cpu = medians[case.name], cpu_medians[case.name]
        base = baselines.get(case.baseline)
        source, name = case.baseline.split(" ", 1)
        cpu_base = baselines.get(f"{source} cpu {name}")
        if base is None and source == "python":
            # The one-thread case was filtered out: measure it now, next to this one.
            one = _with_bytes(securememory.ProtectedMemorySecretFactory)()
            timed = [_time(one, case.iters) for _ in range(reps)]
            base = statistics.median(wall for wall, _ in timed)
            cpu_base = statistics.median(cpu for _, cpu in timed)
        if base is None:
            result, goal_ns = "no baseline", None
        elif case.allowance_ns is not None:
            goal_ns = base + case.allowance_ns
            result = "met" if ns <= goal_ns else "missed"
        else:
            goal_ns = base * (case.ratio or 1.0)
            result = "met" if ns <= goal_ns else "missed"
        rows.append(
            (
                case.name,
                _micro(ns),
                case.baseline,
                _micro(base),
                "-" if base is None else f"{(ns - base) / 1000:+.2f} us",
                "-" if base is None else f"{ns / base:.2f}",
                "-" if cpu_base is None else f"{(cpu - cpu_base) / 1000:+.2f} us",
                case.goal(),
                result,
            )
        )
        if args.json:
            print(
                json.dumps(
                    {
                        "name": case.name,
                        "ns_per_op": ns,
                        "baseline": case.baseline,
                        "baseline_ns": base,
                        "cpu_ns_per_op": cpu,
                        "cpu_baseline_ns": cpu_base,
                        "goal_ns": goal_ns,
                        "met": None if goal_ns is None else ns <= goal_ns,
                        "reps": reps,
                        "iters": case.iters,
                    }
                )
            )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(
        "\nThe goals are judged on wall-clock figures; 'cpu added' compares process CPU time instead (all threads "
        "added up), which is steadier on a busy machine."
    )
    print(
        f"median of {reps} repetition(s) of ~{batch_ms:g} ms batches per case, Rust rows re-measured by "
        f"`securememory bench --reps 1` after each repetition; {time.monotonic() - started:.1f} s; "
        f"Python {sys.version.split()[0]}, securememory {securememory.__version__}"
    )
    if rust_error is not None:
        print(rust_error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
