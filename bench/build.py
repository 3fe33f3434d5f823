"""Pack build benchmark: ``build_packs`` end to end vs a single-process zstd baseline.

Target (issue): build throughput >= 1.2x the single-process baseline, in MB/s of DICOM
input (uncompressed member bytes).

ours      ``iac_spark.build_packs(spark.read.format("zipdcm").load(root), out,
          dataset="bench", zstd_level=3)`` in an already-started, warmed-up local[2]
          session: header-only scan + driver plan + one Spark task per plan task
          (each reads its members from the zips, zstd-compresses, writes segments)
          + driver merge into published packs. A fresh ``out`` dir per run.
baseline  one Python process, no Spark, the minimum work any packer must do: iterate
          the zips, read (inflate) each DICOM member, ``zstandard.ZstdCompressor(level=3)
          .compress(data)``, append to one file. No index, no scan, no checks.

Both read the same warm-cache zips and write to the same disk (no fsync on either side).
The split of our time comes from ``build_packs``' progress callback (scan done, plan done,
end) on every run.

    .venv/bin/python bench/build.py            # full: 2,000 CT slices (~1 GB raw), 3 runs
    .venv/bin/python bench/build.py --quick    # smoke test: 200 slices, 1 run
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import shutil
import statistics
import time
import zipfile
from pathlib import Path
from typing import Any

import common
import zstandard

import iac_spark


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


def _group(filename: str, func: str) -> str:
    """Component of a profiled function, for the own-time breakdown of the pack tasks."""
    if filename == "~":  # C builtins: name them by what they do
        for key, label in (
            ("decompress", "zip inflate (zlib, C)"),
            ("crc32", "crc32 (zlib, C: zipfile check + task re-check + stored crc)"),
            ("ZstdCompressor", "zstd compress (C)"),
            ("compress", "zstd compress (C)"),
            ("build_pack_data_segment", "iatro segment build (copies the spool)"),
            ("write", "file write (spool)"),
            ("read", "file read (C)"),
            ("join", "bytes join/copy (C)"),
        ):
            if key in func:
                return label
        return "other C builtins"
    for key, label in (
        ("zipfile", "zipfile (Python)"),
        ("iac_spark/inputs", "iac_spark inputs (fetch, archives)"),
        ("iac_spark/packing", "iac_spark packing (task, shard)"),
        ("pyarrow", "pyarrow (index tables)"),
        ("iatro", "iatro (Python)"),
    ):
        if key in filename:
            return label
    return "other Python (stdlib)"


def profile_build(corpus: common.Corpus, work: Path) -> str:
    """The same build in one process, no Spark: phase times + where the task time goes."""
    from iac_spark.inputs.scan import COLUMNS, ScanUnit, scan_unit
    from iac_spark.packing.merge import merge_segments
    from iac_spark.packing.plan import PLAN_COLUMNS, plan_build
    from iac_spark.packing.task import run_task, write_task_spec

    out = str(work / "profile")
    staging = os.path.join(out, "_staging", "profile")
    os.makedirs(staging, exist_ok=True)
    phases: list[list[str]] = []
    t0 = time.perf_counter()
    keep = [COLUMNS.index(c) for c in PLAN_COLUMNS]
    rows = [
        {PLAN_COLUMNS[k]: row[i] for k, i in enumerate(keep)}
        for z in corpus.zips
        for row in scan_unit(ScanUnit(z, "zip"))
    ]
    phases.append(["scan (scan_unit, all zips)", f"{time.perf_counter() - t0:.2f}"])
    t0 = time.perf_counter()
    plan = plan_build(rows, num_tasks=2)
    specs = [write_task_spec(staging, i, recs) for i, recs in enumerate(plan.tasks)]
    phases.append([f"plan ({len(plan.tasks)} tasks)", f"{time.perf_counter() - t0:.2f}"])
    prof = cProfile.Profile()
    segments = []
    for i, spec in enumerate(specs):
        t0 = time.perf_counter()
        prof.enable()
        segments += run_task(spec, staging, task_id=i, attempt_id=0, zstd_level=3).segments
        prof.disable()
        phases.append([f"task {i} (under cProfile)", f"{time.perf_counter() - t0:.2f}"])
    t0 = time.perf_counter()
    packs = merge_segments(segments, out, "bench", "profile")
    how = ",".join(sorted({pk.published_by for pk in packs}))
    phases.append(
        [
            f"merge ({len(segments)} segments -> {len(packs)} pack, {how})",
            f"{time.perf_counter() - t0:.2f}",
        ]
    )
    shutil.rmtree(out, ignore_errors=True)
    st: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in st.values())
    own: dict[str, float] = {}
    for (f, _line, fn), v in st.items():
        g = _group(f, fn)
        own[g] = own.get(g, 0.0) + v[2]
    parts = [
        [g, f"{x:.2f}", f"{100 * x / total:.0f}%"]
        for g, x in sorted(own.items(), key=lambda kv: -kv[1])
    ]
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(12)
    text = buf.getvalue()
    top = text[text.find("   ncalls") :] if "   ncalls" in text else text
    return (
        "profile: the same build in ONE process, no Spark (phases run one after another):\n"
        + common.table(["phase", "seconds"], phases)
        + "\n\nown time inside the pack tasks, by component:\n"
        + common.table(["component", "seconds", "share"], parts)
        + f"\n\ntop 12 functions by own time:\n{top.rstrip()}"
    )


def main() -> None:
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

    counter = iter(range(1_000_000))

    def ours() -> dict[str, Any]:
        out = str(work / f"ours-{next(counter)}")
        marks: list[float] = []
        t0 = time.perf_counter()
        df = spark.read.format("zipdcm").load(root)
        result = iac_spark.build_packs(
            df,
            out,
            dataset="bench",
            zstd_level=3,
            progress=lambda _msg: marks.append(time.perf_counter() - t0),
        )
        total = time.perf_counter() - t0
        info = {
            "records": result.num_records,
            "raw": result.raw_bytes,
            "stored": result.stored_bytes,
            "packs": len(result.packs),
            "errors": len(result.errors),
            # progress: "scanned", "packing", summary (the end)
            "scan": marks[0] if len(marks) >= 1 else float("nan"),
            "plan": marks[1] - marks[0] if len(marks) >= 2 else float("nan"),
            "tasks+merge": total - marks[1] if len(marks) >= 2 else float("nan"),
        }
        shutil.rmtree(out, ignore_errors=True)
        return info

    def base() -> dict[str, Any]:
        out = str(work / f"baseline-{next(counter)}.zst")
        n, raw, stored = baseline(corpus.zips, out)
        os.remove(out)
        return {"records": n, "raw": raw, "stored": stored, "packs": 1, "errors": 0}

    print("warm-up (untimed): page cache, one small build", flush=True)
    common.warm_files(corpus.zips)
    iac_spark.build_packs(
        spark.read.format("zipdcm").load(corpus.zips[0]), str(work / "warm"), dataset="bench"
    )
    shutil.rmtree(work / "warm", ignore_errors=True)
    print("timing:", flush=True)
    name_ours = "ours: build_packs (local[2], end to end)"
    name_base = "baseline: 1 process, inflate + zstd-3 + append"
    t = common.interleaved([(name_ours, ours), (name_base, base)], runs)
    shutil.rmtree(work, ignore_errors=True)

    common.header("bench/build.py: pack build throughput", corpus, runs)
    mb_in = corpus.dicom_bytes / common.MB
    rows = []
    for name in (name_ours, name_base):
        tm = t[name]
        r = tm.extra[-1]
        rows.append(
            [
                name, f"{tm.median:.2f}", tm.spread(), f"{mb_in / tm.median:,.1f}", r["records"],
                f"{r['raw'] / common.MB:,.1f}", f"{r['stored'] / common.MB:,.1f}", r["packs"],
            ]
        )  # fmt: skip
    print()
    print(
        common.table(
            [
                "variant",
                "median s",
                "spread s",
                "MB/s in",
                "records",
                "raw MB",
                "stored MB",
                "files",
            ],
            rows,
        )
    )
    ex = t[name_ours].extra
    print()
    print("split of ours (median over runs, from build_packs' progress callback):")
    split = [
        [part, f"{statistics.median(e[part] for e in ex):.2f}"]
        for part in ("scan", "plan", "tasks+merge")
    ]
    split.append(["total", f"{t[name_ours].median:.2f}"])
    print(common.table(["phase", "seconds"], split))
    ratio = t[name_base].median / t[name_ours].median
    print()
    bad = [e for e in ex if e["records"] != corpus.dicom_members or e["raw"] != corpus.dicom_bytes]
    if bad:
        print(f"WARNING: a build packed {bad[0]['records']} records / {bad[0]['raw']} bytes, expected "
              f"{corpus.dicom_members} / {corpus.dicom_bytes}")  # fmt: skip
    print(common.figure("ours MB/s (absolute)", mb_in / t[name_ours].median, " MB/s"))
    print(common.figure("baseline MB/s (absolute)", mb_in / t[name_base].median, " MB/s"))
    print(common.verdict("ours / single-process baseline", ratio, 1.2))
    print(f"{'parallel efficiency vs 2x baseline (2 cores)':<44s} {ratio / 2:10.0%}")
    if args.profile or ratio < 1.2:
        print()
        work.mkdir(parents=True, exist_ok=True)
        print(profile_build(corpus, work))
        shutil.rmtree(work, ignore_errors=True)
    common.footer(args.quick)
    spark.stop()


if __name__ == "__main__":
    main()
