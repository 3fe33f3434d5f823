"""Shared helpers for the benchmarks in ``bench/``: corpus cache, timing, Spark, tables.

Every script:

* generates (once) a synthetic corpus under ``bench_out/`` keyed by its
  :class:`~iac_spark.testing.corpus.CorpusSpec` and reuses it afterwards;
* times each measured variant ``runs`` times, *interleaved* (ours, baseline, ours,
  baseline, ...) so that noise from other processes on the shared machine hits both
  sides alike, and reports the median (plus min/max);
* prints a plain-text table, the ratios against the baseline measured in the same
  run, and the exact command that reproduces it.

The scripts are run as ``python bench/<name>.py`` (``make bench-<name>``), so this
module is imported as ``common`` (``bench/`` is ``sys.path[0]``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import re
import shlex
import statistics
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iac_spark.testing.corpus import CorpusSpec, generate_corpus

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "bench_out"
MB = 1024**2

#: Full corpus: 20 patients x 100 CT slices 512x512 (2,000 DICOM members, ~1.05 GB raw),
#: one zip per patient with a LICENSE.txt member, deflate level 6 (zlib's default, what
#: ordinary zip tools write). Generated once (~60 s on 2 cores), then cached.
FULL_SPEC = CorpusSpec(patients=20, ct_slices=100, mr_slices=0, ct_size=512, seed=0)
#: --quick corpus: 4 patients x 50 slices (200 members, ~105 MB raw), same settings.
QUICK_SPEC = CorpusSpec(patients=4, ct_slices=50, mr_slices=0, ct_size=512, seed=0)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--quick",
        action="store_true",
        help="small corpus (4 patients x 50 slices), 1 run each: a smoke test (< 2 min)",
    )
    p.add_argument(
        "--runs", type=int, default=None, help="timed runs per variant (default 3, --quick 1)"
    )
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="cache/work dir (default bench_out/)"
    )
    return p


def runs_of(args: argparse.Namespace) -> int:
    return args.runs if args.runs is not None else (1 if args.quick else 3)


def spec_of(args: argparse.Namespace) -> CorpusSpec:
    return QUICK_SPEC if args.quick else FULL_SPEC


def command_line() -> str:
    """The command that reproduces this run (from the repo root)."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO)
    return " ".join(shlex.quote(a) for a in [".venv/bin/python", script, *sys.argv[1:]])


# --------------------------------------------------------------------------------------
# Corpus cache
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    root: Path
    key: str
    spec: CorpusSpec
    zips: tuple[str, ...]
    dicom_members: int
    other_members: int
    dicom_bytes: int
    zip_bytes: int
    generated_seconds: float | None  # None when reused from the cache

    def describe(self) -> str:
        level = self.spec.compresslevel if self.spec.compresslevel is not None else 6
        return (
            f"{len(self.zips)} zips, {self.dicom_members} DICOM members "
            f"({self.spec.ct_size}x{self.spec.ct_size} CT) + {self.other_members} LICENSE.txt, "
            f"{self.dicom_bytes / MB:,.0f} MB raw DICOM, {self.zip_bytes / MB:,.0f} MB zipped "
            f"(deflate level {level}) at {self.root}"
        )


def spec_key(spec: CorpusSpec) -> str:
    fields = dataclasses.asdict(spec)
    blob = json.dumps(fields, sort_keys=True, default=str).encode()
    return (
        f"p{spec.patients}-ct{spec.ct_slices}x{spec.ct_size}-{hashlib.sha1(blob).hexdigest()[:10]}"
    )


def get_corpus(spec: CorpusSpec, out: Path = DEFAULT_OUT) -> Corpus:
    """The corpus for ``spec`` under ``out/corpus-<key>/``: reused if complete, else generated."""
    key = spec_key(spec)
    root = (out / f"corpus-{key}").resolve()
    marker = root / "_corpus.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        if all(os.path.exists(z) for z in info["zips"]):
            return Corpus(root, key, spec, tuple(info["zips"]), info["dicom_members"],
                          info["other_members"], info["dicom_bytes"], info["zip_bytes"], None)  # fmt: skip
    print(f"generating corpus {key} under {root} ...", flush=True)
    t0 = time.perf_counter()
    s = generate_corpus(root, spec)
    elapsed = time.perf_counter() - t0
    zips = tuple(str(p.resolve()) for p in s.zips)
    info = {
        "spec": dataclasses.asdict(spec),
        "zips": list(zips),
        "dicom_members": s.dicom_members,
        "other_members": s.other_members,
        "dicom_bytes": s.total_dicom_bytes,
        "zip_bytes": sum(os.path.getsize(z) for z in zips),
        "generated_seconds": elapsed,
    }
    marker.write_text(json.dumps(info, indent=1))
    print(f"generated in {elapsed:.1f} s", flush=True)
    return Corpus(root.resolve(), key, spec, zips, s.dicom_members, s.other_members,
                  s.total_dicom_bytes, info["zip_bytes"], elapsed)  # fmt: skip


def warm_files(paths: Iterable[str | Path]) -> int:
    """Read every file once (OS page cache warm for both sides); returns bytes read."""
    total = 0
    for p in paths:
        with open(p, "rb") as fh:
            while chunk := fh.read(16 * MB):
                total += len(chunk)
    return total


def zip_members(path: str) -> list[zipfile.ZipInfo]:
    """File entries of a zip in directory order (no directory entries)."""
    with zipfile.ZipFile(path) as zf:
        return [i for i in zf.infolist() if not i.is_dir()]


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


@dataclass
class Timing:
    name: str
    seconds: list[float] = dataclasses.field(default_factory=list)
    extra: list[Any] = dataclasses.field(default_factory=list)
    cpu: list[float] = dataclasses.field(default_factory=list)  # CPU s of this process tree

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu) if self.cpu else float("nan")

    def spread(self) -> str:
        if len(self.seconds) == 1:
            return f"{self.seconds[0]:.2f}"
        return f"{min(self.seconds):.2f}-{max(self.seconds):.2f}"


def interleaved(variants: Sequence[tuple[str, Callable[[], Any]]], runs: int) -> dict[str, Timing]:
    """Run each variant ``runs`` times, round-robin; return timings (and each run's result).

    Besides wall time, each run's CPU time of this process and all its descendants (the
    Spark JVM and its Python workers) is recorded: on a shared machine wall time says what
    the run got, CPU time what it cost.
    """
    out = {name: Timing(name) for name, _ in variants}
    check_cores("before timing")
    for i in range(runs):
        for name, fn in variants:
            c0 = tree_cpu_seconds()
            t0 = time.perf_counter()
            result = fn()
            dt = time.perf_counter() - t0
            cpu = tree_cpu_seconds() - c0
            out[name].seconds.append(dt)
            out[name].cpu.append(cpu)
            out[name].extra.append(result)
            print(f"  run {i + 1}/{runs}  {name:<48s} {dt:8.2f} s  (CPU {cpu:6.2f} s)", flush=True)
    check_cores("after timing")
    return out


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and all its descendants.

    Live descendants are read from ``/proc`` (their own time plus that of their reaped
    children); children this process reaped itself come from ``RUSAGE_CHILDREN``. A worker
    that exits between two readings without being reaped by a live process is missed, so
    this is a lower bound (Spark reuses its Python workers, so little is missed). Returns
    this process's CPU time alone where ``/proc`` is not available.
    """
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
    try:
        tick = os.sysconf("SC_CLK_TCK")
        parent: dict[int, int] = {}
        ticks: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(entry)
            parent[pid] = int(fields[1])
            ticks[pid] = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    except OSError:
        return total
    me = os.getpid()
    for pid in ticks:
        p, seen = parent.get(pid), 0
        while p is not None and p > 1 and seen < 64:
            if p == me:
                total += ticks[pid] / tick
                break
            p, seen = parent.get(p), seen + 1
    return total


def effective_cores(threads: int = 2) -> float:
    """How many cores this process can actually use right now (the machine is shared).

    Times ``threads`` threads each deflating 16 MB (zlib releases the GIL) against one
    thread doing the same once: 2.0 means two free cores, 1.0 means others use one.
    """
    import zlib
    from concurrent.futures import ThreadPoolExecutor

    buf = os.urandom(8 * MB)

    def work(_: int = 0) -> None:
        for _i in range(2):
            zlib.compress(buf, 1)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))  # start the threads, warm the caches
        t0 = time.perf_counter()
        work()
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        list(pool.map(work, range(threads)))
        many = time.perf_counter() - t0
    return threads * one / many


_CORES: list[float] = []


def check_cores(when: str) -> float:
    """Measure :func:`effective_cores` now, remember it for :func:`header`, print it."""
    c = effective_cores()
    _CORES.append(c)
    print(f"effective cores ({when}): {c:.2f} of {os.cpu_count()}", flush=True)
    return c


# --------------------------------------------------------------------------------------
# Spark
# --------------------------------------------------------------------------------------


def spark_session(master: str = "local[2]") -> SparkSession:
    """Start the local session once and warm it up (JVM, Python workers, Arrow path)."""
    from pyspark import cloudpickle

    import iac_spark

    # bench/common.py is not importable on the Python workers: ship it by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    t0 = time.perf_counter()
    spark = iac_spark.local_session(master)
    started = time.perf_counter() - t0
    t0 = time.perf_counter()
    spark.range(0, 4, 1, 2).mapInArrow(lambda it: it, "id long").collect()  # start Python workers
    print(
        f"spark {spark.version} {master}: session {started:.1f} s, warm-up {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    return spark


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def header(title: str, corpus: Corpus | None, runs: int, method: str | None = None) -> None:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    print()
    print("=" * 100)
    print(f"{title}   ({now})")
    print(
        f"machine: {platform.node()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}, "
        f"load avg {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    if _CORES:
        print(
            "effective cores free for us (2 threads vs 1 deflating, before/after timing): "
            + " / ".join(f"{c:.2f}" for c in _CORES)
        )
    if corpus is not None:
        gen = (
            "reused from cache"
            if corpus.generated_seconds is None
            else f"generated in {corpus.generated_seconds:.0f} s"
        )
        print(f"corpus: {corpus.describe()} ({gen})")
    print(
        method
        or f"each figure: median of {runs} run(s), variants interleaved; spread = min-max seconds"
    )
    print("=" * 100)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def fmt(r: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def verdict(label: str, value: float, target: float, unit: str = "x") -> str:
    ok = "PASS" if value >= target else "BELOW TARGET"
    return f"{label:<44s} {value:10.2f}{unit:<7s} target >= {target:g}{unit}   {ok}"


def figure(label: str, value: float, unit: str, note: str = "") -> str:
    return f"{label:<44s} {value:10.2f}{unit:<7s} {note}".rstrip()


def footer(quick: bool = False) -> None:
    print()
    if quick:
        print("--quick: a smoke test on a small corpus; fixed costs dominate, so the targets")
        print("(PASS/BELOW TARGET) only mean something for the full run (no --quick).")
    print(f"reproduce: {command_line()}")
    print()


class Marks:
    """A progress sink that remembers when each build message arrived (seconds from ``t0``)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.lines: list[tuple[float, str]] = []

    def __call__(self, line: str) -> None:
        self.lines.append((time.perf_counter() - self.t0, line))

    def at(self, pattern: str) -> float:
        """Time of the first message matching ``pattern`` (a regex, from the start; a plain
        prefix such as ``"scanned "`` works as is); nan if none."""
        rx = re.compile(pattern)
        return next((t for t, line in self.lines if rx.match(line)), float("nan"))
