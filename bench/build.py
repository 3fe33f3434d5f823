"""Pack build benchmark: the build core on Spark end to end vs a single-process zstd baseline.

Target (issue 7): build throughput >= 1.5x the single-process baseline, in MB/s of DICOM
input (uncompressed member bytes).

ours      the real orchestration, ``iac_spark.packing.run_build(survey(discover([root])), out,
          executor=SparkExecutor(spark), dataset="bench", scan_options={"meta": False})`` in an
          already-started, warmed-up local[2] session (zstd level 3, the default codec):
          discovery + one central-directory read per zip, scan tasks (header-only, no JSON)
          writing their rows to staging, the columnar driver plan, one Spark task per pack
          task (each reads its members from the zips, zstd-compresses, writes segments), and
          the driver merge into published packs. Timed from discovery on; a fresh ``out``
          per run.
baseline  one Python process, no Spark, the minimum work any packer must do: iterate
          the zips, read (inflate) each DICOM member, ``zstandard.ZstdCompressor(level=3)
          .compress(data)``, append to one file. No index, no scan, no checks.
(ref)     ``iac_spark.catalog.build(spark, [root], out, executor="spark")``: the same core plus
          the catalog (scan with ``meta`` JSON and the promoted attributes, Delta commit of
          records/sources/errors/packs/runs with delta-rs) — what ``iac-spark build`` does.
(ref)     ``run_build`` with ``LocalExecutor()``: the same build in this one process, no JVM;
          against the baseline it shows what the core costs on one core (scan, plan, index,
          merge) beyond inflate + zstd.

Both sides read the same warm-cache zips and write to the same disk (no fsync on either
side). The split of our time comes from the build's progress messages ("scanned ...",
"packing ...", the closing summary) on every run.

    .venv/bin/python bench/build.py            # full: 2,000 CT slices (~1 GB raw), 3 runs
    .venv/bin/python bench/build.py --quick    # smoke test: 200 slices, 1 run
    .venv/bin/python bench/build.py --profile  # also profile the build in one process
"""

from __future__ import annotations

import cProfile
import io
import math
import os
import pstats
import shutil
import statistics
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import common
import zstandard

from iac_spark import catalog
from iac_spark.inputs import discover, survey
from iac_spark.packing import LocalExecutor, run_build
from iac_spark.packing.executor import Progress, TaskFn

#: Issue 7 target: ours / single-process baseline.
TARGET_RATIO = 1.5

S = TypeVar("S")
R = TypeVar("R")


def baseline(zips: tuple[str, ...], out_file: str, level: int = 3) -> tuple[int, int, int]:
    """Single process: inflate each DICOM member, zstd it, append to one file."""
    cctx = zstandard.ZstdCompressor(level=level)
    n = raw = stored = 0
    with open(out_file, "wb") as out:
        for path in zips:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.filename.endswith(".dcm"):
                        continue  # LICENSE.txt
                    data = zf.read(info)
                    blob = cctx.compress(data)
                    out.write(blob)
                    n += 1
                    raw += len(data)
                    stored += len(blob)
    return n, raw, stored


def build_split(marks: common.Marks, total: float, surveyed: float) -> dict[str, float]:
    """Phases of one ``run_build`` from its messages: survey, scan, plan, pack + merge."""
    scanned = marks.at("scanned ")
    packing = marks.at("packing ")
    done = marks.at("run ")  # the closing summary, after the merge and the staging cleanup
    return {
        "discover+survey": surveyed,
        "scan tasks": scanned - surveyed,
        "plan": packing - scanned,
        "pack tasks+merge": (total if math.isnan(done) else done) - packing,
    }


# --------------------------------------------------------------------------------------
# Profile: the same build in one process, each phase's tasks under cProfile
# --------------------------------------------------------------------------------------


class ProfilingExecutor:
    """A local executor (the real one) whose tasks run under one cProfile per phase."""

    name = "local"

    def __init__(self) -> None:
        self.inner = LocalExecutor()
        self.profiles: dict[str, cProfile.Profile] = {}
        self.seconds: dict[str, float] = {}

    def parallelism(self) -> int:
        return self.inner.parallelism()

    def check_visible(self, path: str) -> None:
        self.inner.check_visible(path)

    def run(
        self,
        fn: TaskFn[S, R],
        specs: Sequence[S],
        *,
        phase: str,
        planned_bytes: int | None = None,
        progress: Progress | None = None,
    ) -> list[R]:
        prof = self.profiles.setdefault(phase, cProfile.Profile())

        def profiled(spec: S, attempt: Any) -> R:
            prof.enable()
            try:
                return fn(spec, attempt)
            finally:
                prof.disable()

        t0 = time.perf_counter()
        out = self.inner.run(
            profiled, specs, phase=phase, planned_bytes=planned_bytes, progress=progress
        )
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t0
        return out


def _group(filename: str, func: str) -> str:
    """Component of a profiled function, for the own-time breakdown of the tasks."""
    if filename == "~":  # C builtins: name them by what they do
        for key, label in (
            ("decompress", "zip inflate (zlib, C)"),
            ("crc32", "crc32 (zlib, C)"),
            ("NativeByteCodec", "zstd encode (iatro record codec, C)"),
            ("ZstdCompressor", "zstd compress (C)"),
            ("NativePackWriter", "iatro pack writer (segment build, C)"),
            ("compress", "zstd compress (C)"),
            ("build_pack_data_segment", "iatro segment build (copies the spool)"),
            ("write", "file write (C)"),
            ("read", "file read (C)"),
            ("pyarrow", "pyarrow (C)"),
        ):
            if key in func:
                return label
        return "other C builtins"
    for key, label in (
        ("zipfile", "zipfile (Python)"),
        ("/pydicom/", "pydicom"),
        ("iac_spark/dicom/dicom_json", "iac_spark dicom_json (meta encoder)"),
        ("iac_spark/dicom", "iac_spark dicom (header parse)"),
        ("iac_spark/inputs", "iac_spark inputs (scan, fetch, archives)"),
        ("iac_spark/packing", "iac_spark packing (task, shard, scan task)"),
        ("pyarrow", "pyarrow (Python)"),
        ("iatro", "iatro (Python)"),
    ):
        if key in filename:
            return label
    return "other Python (stdlib)"


def _breakdown(prof: cProfile.Profile, top: int = 12) -> str:
    st: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in st.values()) or 1.0
    own: dict[str, float] = {}
    for (f, _line, fn), v in st.items():
        g = _group(f, fn)
        own[g] = own.get(g, 0.0) + v[2]
    parts = [
        [g, f"{x:.2f}", f"{100 * x / total:.0f}%"]
        for g, x in sorted(own.items(), key=lambda kv: -kv[1])
    ]
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    text = buf.getvalue()
    body = text[text.find("   ncalls") :] if "   ncalls" in text else text
    return (
        common.table(["component", "seconds", "share"], parts)
        + f"\n\ntop {top} functions by own time:\n{body.rstrip()}"
    )


def profile_build(corpus: common.Corpus, work: Path) -> str:
    """``run_build`` in ONE process (LocalExecutor): phase times + where each phase's time goes."""
    out = str(work / "profile")
    ex = ProfilingExecutor()
    marks = common.Marks()
    sources = survey(discover([str(corpus.root)]))
    surveyed = time.perf_counter() - marks.t0
    result = run_build(
        sources, out, executor=ex, dataset="bench", scan_options={"meta": False}, progress=marks
    )
    total = time.perf_counter() - marks.t0
    shutil.rmtree(out, ignore_errors=True)
    split = build_split(marks, total, surveyed)
    rows = [[k, f"{v:.2f}"] for k, v in split.items()]
    rows.insert(2, ["  of which scan tasks (profiled)", f"{ex.seconds.get('scan', 0.0):.2f}"])
    rows.append(["  of which pack tasks (profiled)", f"{ex.seconds.get('pack', 0.0):.2f}"])
    rows.append(["total", f"{total:.2f}"])
    text = (
        f"profile: run_build in ONE process (LocalExecutor, tasks under cProfile), "
        f"{result.num_records} records, {len(result.packs)} pack(s)\n"
        + common.table(["phase", "seconds"], rows)
    )
    for phase, prof in ex.profiles.items():
        text += f"\n\n{phase} tasks, own time by component:\n" + _breakdown(prof)
    return text


# --------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------


def main() -> None:
    from iac_spark.spark_executor import SparkExecutor

    p = common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--profile", action="store_true", help="always print the 1-process build profile"
    )
    args = p.parse_args()
    runs = common.runs_of(args)
    corpus = common.get_corpus(common.spec_of(args), args.out)
    root = str(corpus.root)
    work = (args.out / "build-work").resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    spark = common.spark_session("local[2]")
    spark_ex = SparkExecutor(spark)

    counter = iter(range(1_000_000))

    def core(executor: Any) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            out = str(work / f"ours-{next(counter)}")
            marks = common.Marks()
            sources = survey(discover([root]))
            surveyed = time.perf_counter() - marks.t0
            result = run_build(
                sources, out, executor=executor, dataset="bench",
                scan_options={"meta": False}, progress=marks,
            )  # fmt: skip
            total = time.perf_counter() - marks.t0
            shutil.rmtree(out, ignore_errors=True)
            return {
                "records": result.num_records, "raw": result.raw_bytes,
                "stored": result.stored_bytes, "packs": len(result.packs),
                "errors": result.issues.num_rows, **build_split(marks, total, surveyed),
            }  # fmt: skip

        return run

    def with_catalog() -> dict[str, Any]:
        out = str(work / f"catalog-{next(counter)}")
        marks = common.Marks()
        r = catalog.build(spark, [root], out, dataset="bench", executor="spark", progress=marks)
        total = time.perf_counter() - marks.t0
        br = r.build_result
        shutil.rmtree(out, ignore_errors=True)
        return {
            "records": r.records, "raw": br.raw_bytes if br else 0,
            "stored": br.stored_bytes if br else 0, "packs": r.new_packs, "errors": r.errors,
            "commit": total - marks.at("run "),
        }  # fmt: skip

    def base() -> dict[str, Any]:
        out = str(work / f"baseline-{next(counter)}.zst")
        n, raw, stored = baseline(corpus.zips, out)
        os.remove(out)
        return {"records": n, "raw": raw, "stored": stored, "packs": 1, "errors": 0}

    print("warm-up (untimed): page cache, one small build per executor", flush=True)
    common.warm_files(corpus.zips)
    for i, ex in enumerate((spark_ex, LocalExecutor())):
        run_build(
            survey(discover([corpus.zips[0]])), str(work / f"warm-{i}"), executor=ex,
            dataset="bench", scan_options={"meta": False},
        )  # fmt: skip
        shutil.rmtree(work / f"warm-{i}", ignore_errors=True)
    print("timing:", flush=True)
    name_ours = "ours: run_build, SparkExecutor local[2]"
    name_base = "baseline: 1 process, inflate + zstd-3 + append"
    name_cat = "(ref) catalog.build (spark): + meta + commit"
    name_local = "(ref) run_build, LocalExecutor (1 process)"
    t = common.interleaved(
        [
            (name_ours, core(spark_ex)),
            (name_base, base),
            (name_cat, with_catalog),
            (name_local, core(LocalExecutor())),
        ],
        runs,
    )
    shutil.rmtree(work, ignore_errors=True)

    common.header("bench/build.py: pack build throughput", corpus, runs)
    mb_in = corpus.dicom_bytes / common.MB
    rows = []
    for name in (name_ours, name_base, name_cat, name_local):
        tm = t[name]
        r = tm.extra[-1]
        rows.append(
            [
                name, f"{tm.median:.2f}", tm.spread(), f"{mb_in / tm.median:,.1f}",
                f"{tm.cpu_median:.2f}", r["records"],
                f"{r['raw'] / common.MB:,.1f}", f"{r['stored'] / common.MB:,.1f}", r["packs"],
            ]
        )  # fmt: skip
    print()
    print(
        common.table(
            ["variant", "median s", "spread s", "MB/s in", "CPU s", "records", "raw MB", "stored MB",
             "files"],
            rows,
        )
    )  # fmt: skip
    print()
    print("split of the run_build variants (median over runs, from the build's progress messages):")
    phases = ("discover+survey", "scan tasks", "plan", "pack tasks+merge")
    split = [
        [
            part,
            f"{statistics.median(e[part] for e in t[name_ours].extra):.2f}",
            f"{statistics.median(e[part] for e in t[name_local].extra):.2f}",
        ]
        for part in phases
    ]
    split.append(["total", f"{t[name_ours].median:.2f}", f"{t[name_local].median:.2f}"])
    print(common.table(["phase", "spark s", "local s"], split))
    commit = statistics.median(e["commit"] for e in t[name_cat].extra)
    print(f"(ref) catalog.build: commit (records/sources/errors/packs/runs) {commit:.2f} s")
    ratio = t[name_base].median / t[name_ours].median
    print()
    for name in (name_ours, name_cat, name_local):
        bad = [e for e in t[name].extra
               if e["records"] != corpus.dicom_members or e["raw"] != corpus.dicom_bytes]  # fmt: skip
        if bad:
            print(f"WARNING: {name} packed {bad[0]['records']} records / {bad[0]['raw']} bytes, "
                  f"expected {corpus.dicom_members} / {corpus.dicom_bytes}")  # fmt: skip
    print(common.figure("ours MB/s (absolute)", mb_in / t[name_ours].median, " MB/s"))
    print(common.figure("baseline MB/s (absolute)", mb_in / t[name_base].median, " MB/s"))
    print(common.verdict("ours / single-process baseline", ratio, TARGET_RATIO))
    print(f"{'parallel efficiency vs 2x baseline (2 cores)':<44s} {ratio / 2:10.0%}")
    cpu_ratio = t[name_ours].cpu_median / t[name_base].cpu_median
    print(
        common.figure(
            "CPU time: ours / baseline (cost ratio)",
            cpu_ratio,
            "x",
            f"(all processes; on 2 free cores ours could reach at most ~{2 / cpu_ratio:.2f}x)",
        )
    )
    print(
        common.figure(
            "(ref) catalog.build / baseline", t[name_base].median / t[name_cat].median, "x"
        )
    )
    print(
        common.figure(
            "(ref) 1-process run_build / baseline",
            t[name_base].median / t[name_local].median,
            "x",
            "(1.0 = the core costs nothing beyond inflate + zstd)",
        )
    )
    if args.profile or ratio < TARGET_RATIO:
        print()
        work.mkdir(parents=True, exist_ok=True)
        print(profile_build(corpus, work))
        shutil.rmtree(work, ignore_errors=True)
    common.footer(args.quick)
    spark.stop()


if __name__ == "__main__":
    main()
