"""Scale benchmark: the same catalog build at 10k and 100k members (``--full``: also 1M).

Issue 7: per size, print scan, plan, pack, commit, rerun, verify and SQL times, driver peak
memory and cost per member, so anyone can see that cost grows linearly; driver memory must
stay <= 1 KB per member.

Corpus: the shape of a TCIA collection, small CT slices in about 1,400 zips.
``iac_spark.testing.corpus.generate_corpus`` with ``CorpusSpec(patients=1400,
ct_slices=round(N / 1400), mr_slices=0, ct_size=32, seed=0)``: one zip per patient (one CT
series each, ~4.6 KB 32x32 slices with realistic ~100-element headers, a ``LICENSE.txt``
per zip, deflate level 6). 10k -> 1,400 x 7 = 9,800 members, 100k -> 1,400 x 71 = 99,400,
1M -> 1,400 x 714 = 999,600. Generated once and cached under ``bench_out/corpus-<key>/``:
on the 2 shared cores 10k took 15 s and 100k 95 s (650-1,050 members/s), so 1M takes
about 16-25 minutes, once.

The build is the real orchestration, ``iac_spark.catalog.build(None, [root], out,
executor="local")`` (what ``iac-spark build --executor local`` runs: discovery + survey,
scan tasks, columnar plan, pack tasks, merge, Delta commit; ``meta`` JSON on, as by
default), in a fresh **subprocess** per size, so that its memory can be measured:

* after a warm-up build of one zip (imports, caches), peak RSS is reset
  (``/proc/self/clear_refs``) and the RSS before the build taken; every phase message of
  the build then reads the peak RSS of the phase (``VmHWM``) and resets it, so the tables
  give the driver's peak RSS growth over the build and in which phase it happened. Times
  come from this run, and the rerun / verify / SQL after it;
* with the local executor the tasks run in the driver process, so its RSS includes a
  task's working memory. A second subprocess therefore runs the same ``catalog.build`` with
  :class:`ProcessExecutor` (this file: the build core's executor interface over 2 spawned
  worker processes, results pickled back, as Spark's Python workers do it), so that the
  measured process is the driver only, under ``tracemalloc`` (Python heap peak, reset per
  phase) with a 5 ms sampler of ``pyarrow.total_allocated_bytes()`` (Arrow buffers, per
  phase). ``--heap-executor local`` traces the local build instead (tracemalloc then slows
  the in-process scan about 10x);
* ``--spark`` (default: the 100k size) runs the build once more with ``executor="spark"``
  on ``local[2]`` (the Python driver's RSS; the JVM is not counted).

The driver *plan* is the ``plan`` phase; the growth of a peak from one size to the next
(marginal bytes per member) is what scales with the corpus, the rest is fixed cost.

Then, on the built catalog: a rerun (nothing new: discovery, survey, fingerprints against
the catalog), ``iac_spark.catalog.verify`` and two SQL queries (``iac_spark.catalog.sql``).

    .venv/bin/python bench/scale.py                 # 10k and 100k members
    .venv/bin/python bench/scale.py --full          # also 1M (corpus: ~20 min, once)
    .venv/bin/python bench/scale.py --sizes 10000   # any sizes
    .venv/bin/python bench/scale.py --runs 3        # median of 3 timed builds per size
    .venv/bin/python bench/scale.py --show-saved    # print the last run's tables again
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import common

from iac_spark.testing.corpus import CorpusSpec

ZIPS = 1400
CT_SIZE = 32
SIZES = (10_000, 100_000)
FULL_SIZE = 1_000_000
#: Issue 7 target: driver memory per member.
TARGET_BYTES_PER_MEMBER = 1024

SQL = {
    "records by modality": (
        "SELECT modality, count(*) AS n, sum(raw_length) AS raw_bytes "
        "FROM records WHERE NOT retired GROUP BY modality"
    ),
    "top series": (
        "SELECT series_instance_uid, num_instances, raw_bytes FROM series "
        "ORDER BY num_instances DESC, series_instance_uid LIMIT 5"
    ),
}

#: Phases of a catalog build, in order, and the message that ends each (see ``Phases``).
PHASES = ("survey", "scan", "plan", "pack", "merge", "commit", "cleanup")


def spec_for(members: int) -> CorpusSpec:
    return CorpusSpec(
        patients=ZIPS, ct_slices=max(1, round(members / ZIPS)), mr_slices=0, ct_size=CT_SIZE,
        seed=0,
    )  # fmt: skip


# --------------------------------------------------------------------------------------
# Child process: one build, measured
# --------------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss() -> bool:
    """Reset VmHWM (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class Phases:
    """Progress sink: cuts the build into :data:`PHASES` and measures each one's peaks.

    A phase ends at its message: ``survey`` at "<n> sources: ...", ``scan`` at "scanned ...",
    ``plan`` at "packing ...", ``pack`` at the last "pack: tasks n/n" (local executor only;
    else pack and merge are one phase), ``merge`` at the build summary "run ...", ``commit`` at
    "committed run ...", ``cleanup`` when :meth:`finish` is called.
    """

    _PACK_DONE = re.compile(r"^pack: tasks (\d+)/(\d+)")

    def __init__(self, *, split_pack: bool, heap: bool, rss0_kb: int) -> None:
        self.split_pack = split_pack
        self.heap = heap
        self.rss0_kb = rss0_kb
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.cpu_last = time.process_time()
        self.phase = 0
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # CPU seconds of this process (all its threads)
        self.peak_rss: dict[str, int] = {}  # bytes above the RSS before the build
        self.peak_heap: dict[str, int] = {}
        self.peak_arrow: dict[str, int] = {}
        self._arrow = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        if heap:
            import pyarrow as pa

            self._arrow0 = pa.total_allocated_bytes()
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()

    def _sample(self) -> None:
        import pyarrow as pa

        while not self._stop.wait(0.005):
            self._arrow = max(self._arrow, pa.total_allocated_bytes() - self._arrow0)

    def _end(self, name: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.seconds[name] = now - self.last
        self.cpu[name] = cpu - self.cpu_last
        self.last, self.cpu_last = now, cpu
        self.peak_rss[name] = (_status_kb("VmHWM") - self.rss0_kb) * 1024
        _reset_peak_rss()
        if self.heap:
            import tracemalloc

            import pyarrow as pa

            self.peak_heap[name] = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            self.peak_arrow[name] = max(self._arrow, pa.total_allocated_bytes() - self._arrow0)
            self._arrow = 0

    def _advance_to(self, name: str) -> None:
        """End every phase up to and including ``name`` (skipped ones get 0 s)."""
        while self.phase < len(PHASES) and PHASES[self.phase] != name:
            self._end(PHASES[self.phase])
            self.phase += 1
        if self.phase < len(PHASES):
            self._end(name)
            self.phase += 1

    def __call__(self, line: str) -> None:
        print(f"[{time.perf_counter() - self.t0:8.2f} s] {line}", file=sys.stderr, flush=True)
        if re.match(r"^\d+ sources: ", line):
            self._advance_to("survey")
        elif line.startswith("scanned "):
            self._advance_to("scan")
        elif line.startswith("packing "):
            self._advance_to("plan")
        elif self.split_pack and (m := self._PACK_DONE.match(line)) and m[1] == m[2]:
            self._advance_to("pack")
        elif line.startswith("run "):
            self._advance_to("merge")
        elif line.startswith("committed run "):
            self._advance_to("commit")

    def finish(self) -> None:
        self._advance_to("cleanup")
        self._stop.set()
        if not self.split_pack:  # pack and merge were one phase: report it as pack
            self.seconds["pack"] += self.seconds.pop("merge", 0.0)
            self.cpu["pack"] += self.cpu.pop("merge", 0.0)
            for d in (self.peak_rss, self.peak_heap, self.peak_arrow):
                if "merge" in d:
                    d["pack"] = max(d.get("pack", 0), d.pop("merge"))


def _dir_bytes(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(dirpath, f))
    return total


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


class ProcessExecutor:
    """Runs each task in a worker process (as Spark runs them in Python workers), results
    pickled back: the measuring process then holds only what a driver holds.

    A bench-side implementation of the build core's executor interface, for measuring
    driver memory without a JVM; the orchestration is the library's (``catalog.build``).
    """

    name = "process"

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers
        self._next_attempt = 0
        self._pool: Any = None

    def parallelism(self) -> int:
        return self.workers

    def check_visible(self, path: str) -> None:
        return None  # same machine

    def run(
        self,
        fn: Callable[[Any, Any], Any],
        specs: Sequence[Any],
        *,
        phase: str,
        planned_bytes: int | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> list[Any]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        from iac_spark.packing.executor import Attempt, progress_line

        if self._pool is None:  # spawned, so workers do not inherit the driver's tracemalloc
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn")
            )
        started = time.monotonic()
        futures = {}
        for i, spec in enumerate(specs):
            futures[self._pool.submit(fn, spec, Attempt(i, self._next_attempt))] = i
            self._next_attempt += 1
        out: list[Any] = [None] * len(specs)
        for done, fut in enumerate(as_completed(futures), start=1):
            out[futures[fut]] = fut.result()
            if progress is not None:
                progress(progress_line(phase, done, len(specs), started, planned_bytes, None))
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def child(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one measured build (and rerun / verify / SQL) in this process; return the figures."""
    import gc

    from iac_spark import catalog

    root, out, kind = cfg["root"], cfg["out"], cfg["executor"]
    heap = bool(cfg["heap"])
    spark = None
    executor: Any = kind
    if kind == "spark":
        import iac_spark

        spark = iac_spark.local_session(cfg.get("master", "local[2]"))
    elif kind == "process":
        executor = ProcessExecutor()
    # warm-up: one zip, the same executor, every step (imports, caches, Python workers)
    warm_out = out + "-warm"
    shutil.rmtree(warm_out, ignore_errors=True)
    first_zip = sorted(p for p in os.listdir(root) if p.endswith(".zip"))[0]
    catalog.build(spark, [os.path.join(root, first_zip)], warm_out, executor=executor)
    catalog.build(spark, [os.path.join(root, first_zip)], warm_out, executor=executor)
    catalog.verify(warm_out)
    for q in SQL.values():
        catalog.sql(warm_out, q)
    shutil.rmtree(warm_out, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    gc.collect()
    if heap:
        import tracemalloc

        tracemalloc.start()
    exact = _reset_peak_rss()
    rss0_kb = _status_kb("VmRSS")
    phases = Phases(split_pack=kind != "spark", heap=heap, rss0_kb=rss0_kb)
    t0 = time.perf_counter()
    result = catalog.build(
        spark, [root], out, executor=executor, meta=cfg.get("meta", True), progress=phases
    )
    build_s = time.perf_counter() - t0
    phases.finish()
    figures: dict[str, Any] = {
        "executor": kind, "heap": heap, "exact_peak": exact, "rss0": rss0_kb * 1024,
        "build": build_s, "seconds": phases.seconds, "cpu": phases.cpu,
        "build_cpu": sum(phases.cpu.values()), "peak_rss": phases.peak_rss,
        "peak_heap": phases.peak_heap, "peak_arrow": phases.peak_arrow,
        "records": result.records, "packs": result.new_packs, "errors": result.errors,
        "skipped": result.skipped, "duplicates": result.duplicates,
        "sources": result.new_sources,
        "raw_bytes": result.build_result.raw_bytes if result.build_result else 0,
        "pack_bytes": _dir_bytes(os.path.join(out, "packs")),
        "catalog_bytes": _dir_bytes(os.path.join(out, "_catalog")),
    }  # fmt: skip
    if heap:
        import tracemalloc

        tracemalloc.stop()
    if cfg.get("after", True):
        figures["rerun"], again = _timed(
            lambda: catalog.build(spark, [root], out, executor=executor, meta=cfg.get("meta", True))
        )
        figures["rerun_nothing_to_do"] = again.nothing_to_do
        figures["verify"], report = _timed(lambda: catalog.verify(out))
        figures["verify_ok"] = report.ok
        figures["verify_records"] = report.records_checked
        figures["sql"] = {}
        for name, q in SQL.items():
            figures["sql"][name], table = _timed(functools.partial(catalog.sql, out, q))
            figures.setdefault("sql_rows", {})[name] = table.num_rows
    if not cfg.get("keep", False):
        shutil.rmtree(out, ignore_errors=True)
    if spark is not None:
        spark.stop()
    if isinstance(executor, ProcessExecutor):
        executor.close()
    return figures


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result whose numbers are the medians over ``runs`` (dicts of numbers per key)."""
    out = dict(runs[-1])
    out["runs"] = len(runs)
    for key, value in runs[-1].items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[key] = statistics.median(r[key] for r in runs)
        elif isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values()):
            out[key] = {k: statistics.median(r[key].get(k, 0) for r in runs) for k in value}
    return out


def run_child(cfg: dict[str, Any], log: Path) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter; its stderr (progress) goes to ``log``."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(cfg)]
    with open(log, "w") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"child failed ({proc.returncode}): {' '.join(cmd[:3])} ...\n{tail}")
    return json.loads(lines[-1][len("RESULT ") :])


# --------------------------------------------------------------------------------------
# Parent: corpora, children, tables
# --------------------------------------------------------------------------------------


def _mb(n: float) -> str:
    return f"{n / common.MB:,.1f}"


def _kb_per(n: float, members: int) -> str:
    return f"{n / members:,.0f}"


def _peak(d: dict[str, int], phases: Sequence[str] = PHASES) -> tuple[int, str]:
    items = [(d.get(p, 0), p) for p in phases if p in d]
    return max(items) if items else (0, "-")


def at_most(label: str, value: float, target: float) -> str:
    ok = "PASS" if value <= target else "ABOVE TARGET"
    return f"{label:<50s} {value:10,.0f} B/member   target <= {target:,.0f}   {ok}"


def _label(r: dict[str, Any], run: str = "timed") -> str:
    return f"{r['members']:,} {r[run]['executor']}"


def _combined(h: dict[str, Any]) -> dict[str, int]:
    """Per phase: Python heap peak + Arrow peak (bytes)."""
    return {p: h["peak_heap"].get(p, 0) + h["peak_arrow"].get(p, 0) for p in h["peak_heap"]}


def report(results: list[dict[str, Any]], spark_runs: list[dict[str, Any]]) -> None:
    runs = results + spark_runs
    print()
    print("times (seconds, from the build's progress messages):")
    rows = []
    for r in runs:
        t, s = r["timed"], r["timed"]["seconds"]
        split = t["executor"] != "spark"
        rows.append(
            [
                _label(r), len_zips(r), _mb(r["raw"]),
                *(f"{s.get(p, 0):.2f}" for p in ("survey", "scan", "plan", "pack")),
                f"{s.get('merge', 0):.2f}" if split else "(in pack)",
                f"{s.get('commit', 0) + s.get('cleanup', 0):.2f}", f"{t['build']:.2f}",
                f"{t['rerun']:.2f}", f"{t['verify']:.2f}", f"{sum(t['sql'].values()):.3f}",
            ]
        )  # fmt: skip
    print(
        common.table(
            ["members, executor", "zips", "raw MB", "survey", "scan", "plan", "pack", "merge",
             "commit", "build", "rerun", "verify", "SQL"],
            rows,
        )
    )  # fmt: skip
    print("(survey = discovery + one central-directory read per zip + catalog lookup; commit")
    print(" includes removing the staging; rerun = the same build again, nothing new; SQL = the")
    print(" two queries at the end, summed)")

    print()
    print("cost per member (microseconds per member):")
    per = []
    for r in runs:
        t, s, n = r["timed"], r["timed"]["seconds"], r["members"]
        per.append(
            [
                _label(r), *(f"{1e6 * s.get(p, 0) / n:,.1f}" for p in ("survey", "scan", "plan")),
                f"{1e6 * (s.get('pack', 0) + s.get('merge', 0)) / n:,.1f}",
                f"{1e6 * (s.get('commit', 0) + s.get('cleanup', 0)) / n:,.1f}",
                f"{1e6 * t['build'] / n:,.1f}", f"{1e6 * t['rerun'] / n:,.1f}",
                f"{1e6 * t['verify'] / n:,.1f}", f"{1e6 * sum(t['sql'].values()) / n:,.2f}",
            ]
        )  # fmt: skip
    print(
        common.table(
            ["members, executor", "survey", "scan", "plan", "pack+merge", "commit", "build",
             "rerun", "verify", "SQL"],
            per,
        )
    )  # fmt: skip

    print()
    print("CPU per member (microseconds of CPU per member, the build's own process; with the")
    print("local executor that is all the work, with Spark only the driver's share):")
    cpu = []
    for r in runs:
        t, n = r["timed"], r["members"]
        c = t.get("cpu", {})
        cpu.append(
            [
                _label(r), *(f"{1e6 * c.get(p, 0) / n:,.1f}" for p in ("survey", "scan", "plan")),
                f"{1e6 * (c.get('pack', 0) + c.get('merge', 0)) / n:,.1f}",
                f"{1e6 * (c.get('commit', 0) + c.get('cleanup', 0)) / n:,.1f}",
                f"{1e6 * t.get('build_cpu', 0) / n:,.1f}",
            ]
        )  # fmt: skip
    print(
        common.table(
            ["members, executor", "survey", "scan", "plan", "pack+merge", "commit", "build"], cpu
        )
    )
    print()
    print("driver memory: peak growth above the driver's RSS before the build, per member")
    mem = []
    for r in runs:
        n, t = r["members"], r["timed"]
        rss, where = _peak(t["peak_rss"])
        plan = t["peak_rss"].get("plan", 0)
        mem.append([_label(r), "RSS", _mb(rss), where, f"{rss / n:,.0f}", f"{plan / n:,.0f}"])
        h = r.get("heap")
        if h:
            label = _label(r, "heap")
            rss, where = _peak(h["peak_rss"])
            plan = h["peak_rss"].get("plan", 0)
            mem.append([label, "RSS", _mb(rss), where, f"{rss / n:,.0f}", f"{plan / n:,.0f}"])
            for what, d in (("heap", h["peak_heap"]), ("arrow", h["peak_arrow"]),
                            ("heap+arrow", _combined(h))):  # fmt: skip
                peak, where = _peak(d)
                mem.append(
                    [label, what, _mb(peak), where, f"{peak / n:,.0f}",
                     f"{d.get('plan', 0) / n:,.0f}"]
                )  # fmt: skip
    print(
        common.table(
            ["members, executor", "measure", "peak MB", "in phase", "peak B/member",
             "plan phase B/member"],
            mem,
        )
    )  # fmt: skip
    print("(local: tasks run in the driver process, so its RSS includes a task's working memory;")
    print(" process: tasks in 2 worker processes, the measured process is the driver only, with")
    print(" heap = tracemalloc peak of the Python heap and arrow = peak of")
    print(" pyarrow.total_allocated_bytes() (5 ms sampler); every peak is reset at each phase)")
    print()
    print("per-phase peaks of the driver, bytes per member (RSS | heap+arrow):")
    ph = []
    for r in runs:
        n = r["members"]
        h = r.get("heap")
        src = h or r["timed"]
        comb = _combined(h) if h else {}
        cells = []
        for p in ("survey", "scan", "plan", "pack", "merge", "commit"):
            a = src["peak_rss"].get(p)
            b = comb.get(p) if h else None
            cells.append(
                ("-" if a is None else f"{a / n:,.0f}") + " | " + ("-" if b is None else f"{b / n:,.0f}")
            )  # fmt: skip
        ph.append([_label(r, "heap" if h else "timed"), *cells])
    print(
        common.table(["members, executor", "survey", "scan", "plan", "pack", "merge", "commit"], ph)
    )

    print()
    print("disk per member: packs and catalog")
    disk = [
        [f"{r['members']:,}", f"{r['timed']['pack_bytes'] / r['members']:,.0f}",
         f"{r['timed']['catalog_bytes'] / r['members']:,.0f}", f"{r['raw'] / r['members']:,.0f}",
         r["timed"]["records"], r["timed"]["packs"], r["timed"]["skipped"],
         r["timed"]["errors"]]
        for r in results
    ]  # fmt: skip
    print(
        common.table(
            ["members", "pack B/m", "catalog B/m", "raw DICOM B/m", "records", "packs", "skipped",
             "errors"],
            disk,
        )
    )  # fmt: skip

    if len(results) >= 2:
        for smaller, larger in itertools.pairwise(results):
            growth(smaller, larger)
    print()
    for r in runs:
        n = r["members"]
        h = r.get("heap")
        if h:
            comb = _combined(h)
            label = _label(r, "heap")
            print(at_most(f"driver plan heap+arrow ({label})", comb.get("plan", 0) / n,
                          TARGET_BYTES_PER_MEMBER))  # fmt: skip
            print(at_most(f"driver build peak heap+arrow ({label})", _peak(comb)[0] / n,
                          TARGET_BYTES_PER_MEMBER))  # fmt: skip
            print(at_most(f"driver build peak RSS ({label})", _peak(h["peak_rss"])[0] / n,
                          TARGET_BYTES_PER_MEMBER))  # fmt: skip
        t = r["timed"]
        print(at_most(f"driver build peak RSS ({_label(r)})", _peak(t["peak_rss"])[0] / n,
                      TARGET_BYTES_PER_MEMBER))  # fmt: skip
    print()
    print("SQL queries (catalog.sql, DataFusion over the committed views):")
    for name, q in SQL.items():
        times = ", ".join(f"{r['members']:,}: {r['timed']['sql'][name]:.3f} s" for r in results)
        print(f"  {name}: {times}\n    {q}")
    for r in runs:
        t = r["timed"]
        ok = t["rerun_nothing_to_do"] and t["verify_ok"] and t["verify_records"] == t["records"]
        if not ok or t["records"] != r["members"]:
            print(f"WARNING {_label(r)}: {t['records']} records of {r['members']} members, rerun "
                  f"nothing_to_do={t['rerun_nothing_to_do']}, verify ok={t['verify_ok']} "
                  f"({t['verify_records']} records checked)")  # fmt: skip


def len_zips(r: dict[str, Any]) -> str:
    return f"{r['zips']:,}"


def growth(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Per-member cost of ``b`` relative to ``a`` (1.0 = linear) and marginal driver memory."""
    na, nb = a["members"], b["members"]
    print()
    print(f"growth {na:,} -> {nb:,} members (x{nb / na:.1f}); per-member ratio 1.0 = linear:")
    lin = []
    pairs = [(k, a["timed"][k], b["timed"][k]) for k in ("build", "rerun", "verify")]
    pairs += [
        (f"  {p}", a["timed"]["seconds"].get(p, 0), b["timed"]["seconds"].get(p, 0))
        for p in ("survey", "scan", "plan", "pack", "merge", "commit")
    ]
    pairs += [("CPU build", a["timed"].get("build_cpu", 0), b["timed"].get("build_cpu", 0))]
    pairs += [
        (f"  CPU {p}", a["timed"].get("cpu", {}).get(p, 0), b["timed"].get("cpu", {}).get(p, 0))
        for p in ("survey", "scan", "plan", "pack", "merge", "commit")
    ]
    for label, ta, tb in pairs:
        if ta > 0:
            lin.append([label, f"{ta:.2f}", f"{tb:.2f}", f"{tb / ta:.1f}",
                        f"{(tb / nb) / (ta / na):.2f}"])  # fmt: skip
    print(common.table(["seconds", f"{na:,}", f"{nb:,}", "ratio", "per-member ratio"], lin))
    runs = [("timed", "RSS", lambda r: r["timed"]["peak_rss"])]
    if a.get("heap") and b.get("heap"):
        runs += [
            ("heap", "RSS", lambda r: r["heap"]["peak_rss"]),
            ("heap", "heap+arrow", lambda r: _combined(r["heap"])),
        ]
    for run, what, get in runs:
        pa_, pb_ = get(a), get(b)
        for phase in ("plan", None):
            va = pa_.get(phase, 0) if phase else _peak(pa_)[0]
            vb = pb_.get(phase, 0) if phase else _peak(pb_)[0]
            print(
                f"marginal driver {what} ({a[run]['executor']}, {phase or 'build peak'}): "
                f"{_mb(va)} -> {_mb(vb)} MB = {(vb - va) / (nb - na):,.0f} bytes per added member"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="also 1M members")
    p.add_argument("--sizes", type=str, default=None, help="comma-separated member counts")
    p.add_argument("--out", type=Path, default=common.DEFAULT_OUT, help="cache/work dir")
    p.add_argument(
        "--runs", type=int, default=1, help="timed builds per size; medians are reported"
    )
    p.add_argument("--no-heap", action="store_true", help="skip the tracemalloc run")
    p.add_argument(
        "--heap-executor",
        choices=("process", "local"),
        default="process",
        help="executor of the tracemalloc run: tasks in worker processes (default; the measured"
        " process is then the driver only) or in the driver (local; tracemalloc slows the scan"
        " about 10x)",
    )
    p.add_argument(
        "--spark",
        type=str,
        default="100000",
        help="sizes also built with the Spark executor (local[2]); '' for none (default 100000)",
    )
    p.add_argument(
        "--show-saved", action="store_true", help="print the tables of the last run again"
    )
    p.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return
    if args.show_saved:
        saved = json.loads((args.out / "scale-work" / "results.json").read_text())
        show(saved["corpora"], saved["results"], saved["spark"], saved.get("runs", 1))
        return
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else [*SIZES, *([FULL_SIZE] if args.full else [])]
    )
    spark_sizes = {int(s) for s in args.spark.split(",") if s}
    work = (args.out / "scale-work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    common.check_cores("before")
    results: list[dict[str, Any]] = []
    spark_runs: list[dict[str, Any]] = []
    corpora = []
    for n in sizes:
        corpus = common.get_corpus(spec_for(n), args.out)
        corpora.append(corpus)
        print(f"corpus {n:,}: {corpus.describe()}", flush=True)
    for n, corpus in zip(sizes, corpora, strict=True):
        common.warm_files(corpus.zips)
        base = {
            "root": str(corpus.root), "out": str(work / f"out-{corpus.key}"), "executor": "local",
        }  # fmt: skip
        entry: dict[str, Any] = {
            "size": n, "members": corpus.dicom_members, "zips": len(corpus.zips),
            "raw": corpus.dicom_bytes,
        }  # fmt: skip
        print(f"{n:,}: build (local executor), rerun, verify, SQL ...", flush=True)
        timed = [
            run_child({**base, "heap": False}, work / f"log-{n}-local-{i}.txt")
            for i in range(args.runs)
        ]
        entry["timed"] = median_run(timed)
        print(f"  build {entry['timed']['build']:.1f} s", flush=True)
        if not args.no_heap:
            print(f"{n:,}: the same build, driver only, under tracemalloc ...", flush=True)
            entry["heap"] = run_child(
                {**base, "executor": args.heap_executor, "heap": True, "after": False},
                work / f"log-{n}-heap.txt",
            )
        results.append(entry)
        if n in spark_sizes:
            print(f"{n:,}: build with the Spark executor (local[2]) ...", flush=True)
            sp = dict(entry)
            sp.pop("heap", None)
            sp["timed"] = run_child(
                {**base, "executor": "spark", "heap": False, "out": base["out"] + "-spark"},
                work / f"log-{n}-spark.txt",
            )
            print(f"  build {sp['timed']['build']:.1f} s", flush=True)
            spark_runs.append(sp)
    common.check_cores("after")
    described = []
    for c in corpora:
        gen = (
            "cached" if c.generated_seconds is None else f"generated in {c.generated_seconds:.0f} s"
        )
        described.append(f"{c.describe()} ({gen})")
    saved = work / "results.json"
    saved.write_text(
        json.dumps(
            {"corpora": described, "results": results, "spark": spark_runs, "runs": args.runs}
        )
    )
    show(described, results, spark_runs, args.runs)
    print(f"(figures saved in {saved}; --show-saved prints them again)")


def show(
    corpora: list[str],
    results: list[dict[str, Any]],
    spark_runs: list[dict[str, Any]],
    runs: int,
) -> None:
    common.header(
        "bench/scale.py: catalog build at scale",
        None,
        runs,
        f"times: median of {runs} build(s) per size, each in a fresh subprocess; memory: the"
        " timed build and one driver-only build under tracemalloc",
    )
    for c in corpora:
        print(f"corpus: {c}")
    report(results, spark_runs)
    common.footer()


if __name__ == "__main__":
    main()
