"""Layout benchmark: ``dicom_patient`` vs ``dicom_p10`` and the zips: stored bytes, build, reads.

Targets (the ``dicom_patient`` layout issue), on the corpus of ``bench/build.py`` and in one
run: the ``dicom_patient`` packs store <= 0.75x the zip bytes; its build runs >= 1.5x the MB/s
of a single-process baseline calling the adapter's builder patient by patient. Pixel-array
reads/s from ``dicom_patient`` packs against ``dicom_p10`` + pydicom decoding are a figure
(no target), as is the stored size on real data (pydicom's bundled CT / MR files).

bytes     the published pack files of the timed builds below, summed per layout
          (``dicom_patient``: one pack per patient, pixels lossless JPEG XL effort 2, the
          layout's default; ``dicom_p10``: each instance's original bytes, zstd level 3),
          against the zip files and the raw DICOM. Real data: the CT / MR test files pydicom
          ships that it decodes here and the layout holds, one per distinct image
          (``layouts_probe.real_input``; ``--extra DIR`` adds folders of .dcm files), written
          into one zip (deflate level 6) and built with both layouts by ``run_build`` on the
          local executor. Those files are 10-320 KB and every pack has ~70 KB of header and
          index, so the real figure compares the data segments (``dicom_patient``: series
          templates, instance deltas, JPEG XL pixels; ``dicom_p10``: the zstd records) with
          the member data of the zip (compressed sizes); pack and zip files are printed beside.
build     MB/s of DICOM input (uncompressed member bytes), variants interleaved:
  ours      the real orchestration, ``run_build(survey(discover([root])), out,
            executor=SparkExecutor(spark), layout="dicom_patient", dataset="bench",
            scan_options={"meta": False})`` in one started, warmed-up local[2] session:
            discovery and survey, scan tasks, the driver plan, one pack task per core that
            builds each of its patients' packs (``build_patient_pack``: header checks, the
            adapter's builder, the read-back of the pack's tables, our index), the merge
            (packs published by rename). Timed from discovery on; a fresh ``out`` per run.
  baseline  one process, no Spark: per zip (one patient each in this corpus, as TCIA ships
            them) ``ZipFile.read`` of each DICOM member, handed lazily to
            ``iatro.iac.adapters.dicom.build_dicom_patient_package_from_files(members, out,
            effort=2, workers=1)``: the adapter's builder on one core at our effort (its
            default effort 7 is several times slower). No scan, no checks, no index.
  (ref)     ``run_build`` with ``layout="dicom_p10"`` on the same executor (its packs are the
            ``dicom_p10`` bytes above); ``run_build`` ``dicom_patient`` with ``LocalExecutor()``
            (the same build in this process, no JVM); the baseline with ``workers=None`` (the
            adapter's own thread pool, ``min(8, cores)`` threads). ``--no-refs`` skips the last
            two (each costs about a baseline run).
reads     the corpus catalogued once per layout after the build timings (``catalog.build(spark,
          [root], out, executor="spark", layout=..., meta=False)``, untimed), both opened with
          ``RecordDataset(out, query, decode="pixels")`` where the query orders the records by
          SOP Instance UID, so both datasets list the same instances. ``--reads`` of them
          (default 500, sampled with ``--seed``, in random order), one ``ds[i]`` per read, in
          this process, packs kept open, interleaved:
  ours      ``dicom_patient``: ``DicomPatientReader.read_pixel_array(row, verify=True)`` (the
            JPEG XL decode) behind ``RecordDataset``
  baseline  ``dicom_p10`` with pydicom decoding: the zstd record, ``pydicom.dcmread``,
            ``pixel_array`` (``RecordDataset``'s native shortcut for plain uncompressed pixels
            switched off)
  (ref)     ``dicom_p10`` as ``RecordDataset`` reads it by default (``native_pixel_array``
            walks the element headers, no pydicom); the raw ``DicomPatientReader
            .read_pixel_array`` on the readers, no ``RecordDataset``
          Before timing every pack is read once and every sampled record's pixels are checked
          equal (dtype, shape, values) across all four.

Both sides of every comparison read warm-cache files and write to the same disk.

    .venv/bin/python bench/layouts.py            # full: 2,000 CT slices (~1 GB raw), 3 runs
    .venv/bin/python bench/layouts.py --quick    # smoke test: 200 slices, 1 run
    .venv/bin/python bench/layouts.py --no-refs --reads 200
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import random
import shutil
import statistics
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import common
import layouts_probe
import numpy as np
from iatro.iac.adapters.dicom import DicomPatientReader, build_dicom_patient_package_from_files

import iac_spark
import iac_spark.data.decode as decode_mod
from iac_spark import catalog
from iac_spark.data import RecordDataset
from iac_spark.inputs import discover, survey
from iac_spark.packing import LocalExecutor, run_build
from iac_spark.packing.dicom_patient import DEFAULT_JXL_EFFORT

#: Targets: dicom_patient pack bytes / zip bytes (at most), ours / baseline build MB/s (at least).
TARGET_BYTES = 0.75
TARGET_BUILD = 1.5

READS_QUERY = (
    "SELECT pack_id, row, sop_instance_uid FROM records WHERE NOT retired ORDER BY sop_instance_uid"
)
PHASES = ("discover+survey", "scan tasks", "plan", "pack tasks+merge")


def check(
    label: str, value: float, target: float, *, at_most: bool = False, digits: int = 2
) -> str:
    """One target line: the value, the target and PASS or MISS."""
    ok = value <= target if at_most else value >= target
    op = "<=" if at_most else ">="
    return f"{label:<44s} {value:10.{digits}f}x       target {op} {target:g}x   " + (
        "PASS" if ok else "MISS"
    )


def pack_file_bytes(paths: list[str]) -> int:
    return sum(os.path.getsize(p) for p in paths)


# --------------------------------------------------------------------------------------
# Build variants
# --------------------------------------------------------------------------------------


def our_build(root: str, out: str, executor: Any, layout: str) -> dict[str, Any]:
    """``run_build`` of ``root`` into ``out`` (removed afterwards): counts, bytes, phase times."""
    marks = common.Marks()
    sources = survey(discover([root]))
    surveyed = time.perf_counter() - marks.t0
    result = run_build(
        sources,
        out,
        executor=executor,
        dataset="bench",
        layout=layout,
        scan_options={"meta": False},
        progress=marks,
    )
    total = time.perf_counter() - marks.t0
    files = pack_file_bytes([p.path for p in result.packs])
    shutil.rmtree(out, ignore_errors=True)
    scanned, packing, done = marks.at("scanned "), marks.at("packing "), marks.at("run ")
    return {
        "records": result.num_records,
        "raw": result.raw_bytes,
        "stored": files,
        "data": sum(p.data_bytes for p in result.packs),
        "packs": len(result.packs),
        "errors": result.issues.num_rows,
        "discover+survey": surveyed,
        "scan tasks": scanned - surveyed,
        "plan": packing - scanned,
        "pack tasks+merge": (total if math.isnan(done) else done) - packing,
    }


def adapter_baseline(zips: tuple[str, ...], out: str, *, workers: int | None) -> dict[str, Any]:
    """One process: each zip's DICOM members, read here, through the adapter's builder."""
    os.makedirs(out)
    sizes: list[int] = []
    paths = []
    for k, path in enumerate(zips):
        target = os.path.join(out, f"patient-{k:05d}.iac")
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if i.filename.endswith(".dcm")]  # no LICENSE.txt

            def members(
                zf: zipfile.ZipFile = zf, infos: list[zipfile.ZipInfo] = infos
            ) -> Iterator[bytes]:
                for info in infos:  # consumed on this thread, also with the builder's pool
                    data = zf.read(info)
                    sizes.append(len(data))
                    yield data

            build_dicom_patient_package_from_files(
                members(), target, effort=DEFAULT_JXL_EFFORT, workers=workers
            )
        paths.append(target)
    stored = pack_file_bytes(paths)
    shutil.rmtree(out, ignore_errors=True)
    return {
        "records": len(sizes),
        "raw": sum(sizes),
        "stored": stored,
        "packs": len(paths),
        "errors": 0,
    }


def time_builds(
    corpus: common.Corpus, work: Path, spark_ex: Any, runs: int, refs: bool
) -> tuple[dict[str, common.Timing], dict[str, str]]:
    root = str(corpus.root)
    counter = iter(range(1_000_000))

    def ours(executor: Any, layout: str) -> Callable[[], dict[str, Any]]:
        return lambda: our_build(root, str(work / f"build-{next(counter)}"), executor, layout)

    def base(workers: int | None) -> Callable[[], dict[str, Any]]:
        return lambda: adapter_baseline(
            corpus.zips, str(work / f"baseline-{next(counter)}"), workers=workers
        )

    names = {
        "ours": "ours: run_build dicom_patient, Spark local[2]",
        "base": "baseline: adapter builder, 1 process, workers=1",
        "p10": "(ref) run_build dicom_p10, Spark local[2]",
        "local": "(ref) run_build dicom_patient, LocalExecutor",
        "threads": "(ref) adapter builder, 1 process, workers=None",
    }
    variants = [
        (names["ours"], ours(spark_ex, "dicom_patient")),
        (names["base"], base(1)),
        (names["p10"], ours(spark_ex, "dicom_p10")),
    ]
    if refs:
        variants += [
            (names["local"], ours(LocalExecutor(), "dicom_patient")),
            (names["threads"], base(None)),
        ]
    else:
        del names["local"], names["threads"]
    print("warm-up (untimed): page cache, one zip per build variant", flush=True)
    common.warm_files(corpus.zips)
    one = corpus.zips[0]
    for executor, layout in (
        (spark_ex, "dicom_patient"),
        (spark_ex, "dicom_p10"),
        (LocalExecutor(), "dicom_patient"),
    ):
        our_build(one, str(work / f"warm-{next(counter)}"), executor, layout)
    adapter_baseline((one,), str(work / f"warm-{next(counter)}"), workers=1)
    print("timing builds:", flush=True)
    return common.interleaved(variants, runs), names


# --------------------------------------------------------------------------------------
# Real data: pydicom's CT / MR test files
# --------------------------------------------------------------------------------------


def real_data(work: Path, extra: list[Path]) -> dict[str, Any]:
    """Both layouts built from pydicom's bundled CT / MR files, zipped: bytes per layout."""
    folder = work / "real"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's lenient-parse warnings on test files
        inp = layouts_probe.real_input(extra)
        zpath = folder / "pydicom-ct-mr.zip"
        names = []
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:  # deflate level 6
            for k, patient in enumerate(inp.patients):
                for m in patient:
                    names.append(f"{k:03d}-{os.path.basename(m.source_path)}")
                    zf.writestr(names[-1], m.read())
        layouts: dict[str, dict[str, Any]] = {}
        for layout in ("dicom_patient", "dicom_p10"):
            r = run_build(
                survey(discover([str(zpath)])),
                str(folder / layout),
                executor=LocalExecutor(),
                dataset="real",
                layout=layout,
                scan_options={"meta": False},
            )
            layouts[layout] = {
                "records": r.num_records,
                "packs": len(r.packs),
                "data": sum(p.data_bytes for p in r.packs),
                "files": pack_file_bytes([p.path for p in r.packs]),
                "errors": r.issues.column("error").to_pylist(),
            }
    zip_file = os.path.getsize(zpath)
    zip_data = sum(i.compress_size for i in common.zip_members(str(zpath)))
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "files": [
            f"{os.path.basename(p[0].source_path)} {a.dtype}{a.shape}"
            for p, a in zip(inp.patients, inp.pixels, strict=True)
        ],
        "count": len(names),
        "raw": inp.raw_bytes,
        "zip_file": zip_file,
        "zip_data": zip_data,
        "layouts": layouts,
    }


# --------------------------------------------------------------------------------------
# Reads
# --------------------------------------------------------------------------------------


def build_catalogs(spark: Any, corpus: common.Corpus, work: Path) -> dict[str, tuple[str, float]]:
    """One catalog per layout for the reads (untimed for the targets): (out, seconds)."""
    made = {}
    for layout in ("dicom_patient", "dicom_p10"):
        out = str(work / f"catalog-{layout}")
        t0 = time.perf_counter()
        r = catalog.build(
            spark,
            [str(corpus.root)],
            out,
            dataset="bench",
            executor="spark",
            layout=layout,
            meta=False,
        )
        made[layout] = (out, time.perf_counter() - t0)
        print(f"catalog {layout}: {r.summary()}", flush=True)
    return made


def time_reads(
    catalogs: dict[str, tuple[str, float]], n_reads: int, seed: int, runs: int
) -> tuple[dict[str, common.Timing], dict[str, str], dict[str, Any]]:
    patient = RecordDataset(catalogs["dicom_patient"][0], READS_QUERY, decode="pixels")
    p10 = RecordDataset(catalogs["dicom_p10"][0], READS_QUERY, decode="pixels")
    sops = patient.table.column("sop_instance_uid").to_pylist()
    if sops != p10.table.column("sop_instance_uid").to_pylist():
        raise SystemExit("MISMATCH: the two catalogs do not hold the same SOP Instance UIDs")
    n = len(patient)
    picks = random.Random(seed).sample(range(n), min(n_reads, n))  # random order
    paths = {p.pack_id: p.path for p in patient.packs}
    readers = {pack_id: DicomPatientReader(path) for pack_id, path in paths.items()}
    locations = [patient.location(i) for i in picks]
    warmed = common.warm_files([*paths.values(), *(p.path for p in p10.packs)])

    def no_shortcut() -> Any:
        return mock.patch.object(decode_mod, "native_pixel_array", lambda _b: None)

    def via(ds: RecordDataset, pydicom_decode: bool = False) -> Callable[[], int]:
        def go() -> int:
            if pydicom_decode:
                with no_shortcut():
                    return sum(ds[i]["pixels"].nbytes for i in picks)
            return sum(ds[i]["pixels"].nbytes for i in picks)

        return go

    def raw() -> int:
        return sum(readers[p].read_pixel_array(r, verify=True).nbytes for p, r in locations)

    # warm-up and check: every sampled record, every variant, the same pixels
    for i, (pack_id, row) in zip(picks, locations, strict=True):
        want = p10[i]["pixels"]
        with no_shortcut():
            got = [p10[i]["pixels"]]
        got += [patient[i]["pixels"], readers[pack_id].read_pixel_array(row, verify=True)]
        for a in got:
            if a.dtype != want.dtype or a.shape != want.shape or not np.array_equal(a, want):
                raise SystemExit(
                    f"MISMATCH: {sops[i]}: {a.dtype}{a.shape} pixels vs {want.dtype}{want.shape}"
                )
    print(
        f"warm: read {warmed / common.MB:,.0f} MB of packs; {len(picks)} records' pixels "
        "equal across layouts and readers",
        flush=True,
    )
    names = {
        "ours": "ours: RecordDataset dicom_patient (JPEG XL)",
        "base": "baseline: RecordDataset dicom_p10 + pydicom",
        "p10": "(ref) RecordDataset dicom_p10, native shortcut",
        "raw": "(ref) DicomPatientReader.read_pixel_array",
    }
    print("timing reads:", flush=True)
    t = common.interleaved(
        [
            (names["ours"], via(patient)),
            (names["base"], via(p10, pydicom_decode=True)),
            (names["p10"], via(p10)),
            (names["raw"], raw),
        ],
        runs,
    )
    for reader in readers.values():
        reader.close()
    patient.close()
    p10.close()
    info = {"records": n, "reads": len(picks), "packs": (len(paths), len(p10.packs))}
    return t, names, info


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def report_bytes(
    corpus: common.Corpus, t: dict[str, common.Timing], names: dict[str, str], real: dict[str, Any]
) -> None:
    ours, p10, base = (t[names[k]].extra[-1] for k in ("ours", "p10", "base"))
    varies = {k for k in ("ours", "p10") if len({e["stored"] for e in t[names[k]].extra}) > 1}
    mb = common.MB
    zips = corpus.zip_bytes

    def row(label: str, files: int, n: int, data: int | None) -> list[str]:
        return [
            label,
            f"{n}",
            f"{files / mb:,.1f}",
            "-" if data is None else f"{data / mb:,.1f}",
            f"{files / zips:.3f}",
            f"{files / p10['stored']:.3f}",
            f"{corpus.dicom_bytes / files:.2f}",
        ]

    print("\n## stored bytes, bench corpus (pack files of the timed builds)")
    print(
        common.table(
            ["what", "files", "MB", "data MB", "/ zips", "/ dicom_p10", "raw / this"],
            [
                row(
                    "dicom_patient packs (ours, JPEG XL effort 2)",
                    ours["stored"],
                    ours["packs"],
                    ours["data"],
                ),
                row("dicom_p10 packs (ours, zstd-3)", p10["stored"], p10["packs"], p10["data"]),
                row(
                    "(ref) baseline's packs (adapter builder)", base["stored"], base["packs"], None
                ),
                row("zips (deflate level 6)", zips, len(corpus.zips), None),
                row("raw DICOM members", corpus.dicom_bytes, corpus.dicom_members, None),
            ],
        )
    )
    if varies:
        print(f"NOTE: pack bytes differed between runs for {sorted(varies)}; last run shown")
    print(
        check(
            "dicom_patient packs / zips (bytes)",
            ours["stored"] / zips,
            TARGET_BYTES,
            at_most=True,
            digits=3,
        )
    )
    print(
        common.figure("dicom_patient packs / dicom_p10 packs", ours["stored"] / p10["stored"], "x")
    )

    lay = real["layouts"]
    pat, dp = lay["dicom_patient"], lay["dicom_p10"]
    print(
        f"\n## stored bytes, real data: {real['count']} of pydicom's bundled CT / MR files "
        f"({', '.join(real['files'])}), one zip"
    )
    rz = real["zip_data"]
    rows = [
        ["raw DICOM", "-", f"{real['raw']:,}", "-", f"{real['raw'] / rz:.3f}", "-"],
        [
            "zip (deflate level 6): member data / file",
            "1",
            f"{rz:,}",
            f"{real['zip_file']:,}",
            "1.000",
            "-",
        ],
        [
            "dicom_p10 (zstd-3): data segment / files",
            f"{dp['packs']}",
            f"{dp['data']:,}",
            f"{dp['files']:,}",
            f"{dp['data'] / rz:.3f}",
            "1.000",
        ],
        [
            "dicom_patient (JPEG XL 2): data / files",
            f"{pat['packs']}",
            f"{pat['data']:,}",
            f"{pat['files']:,}",
            f"{pat['data'] / rz:.3f}",
            f"{pat['data'] / dp['data']:.3f}",
        ],
    ]
    print(
        common.table(
            ["what", "files", "data B", "file B", "data / zip data", "data / p10 data"], rows
        )
    )
    for layout, r in lay.items():
        if r["records"] != real["count"] or r["errors"]:
            print(
                f"WARNING: real {layout}: {r['records']} of {real['count']} packed; "
                f"errors: {r['errors']}"
            )
    print(
        common.figure(
            "real: dicom_patient data / zip member data",
            pat["data"] / rz,
            "x",
            "(no target; the per-pack header is left out, see above)",
        )
    )
    print(common.figure("real: dicom_patient data / dicom_p10 data", pat["data"] / dp["data"], "x"))


def report_build(corpus: common.Corpus, t: dict[str, common.Timing], names: dict[str, str]) -> None:
    mb_in = corpus.dicom_bytes / common.MB
    rows = []
    for name in names.values():
        tm = t[name]
        r = tm.extra[-1]
        rows.append(
            [
                name,
                f"{tm.median:.2f}",
                tm.spread(),
                f"{mb_in / tm.median:,.1f}",
                f"{tm.cpu_median:.2f}",
                r["records"],
                f"{r['raw'] / common.MB:,.1f}",
                f"{r['stored'] / common.MB:,.1f}",
                r["packs"],
            ]
        )
    print("\n## build throughput (MB/s of DICOM input)")
    print(
        common.table(
            [
                "variant",
                "median s",
                "spread s",
                "MB/s in",
                "CPU s",
                "records",
                "raw MB",
                "stored MB",
                "files",
            ],
            rows,
        )
    )
    split_of = [k for k in ("ours", "local", "p10") if k in names]
    print("\nsplit of the run_build variants (median s over runs, from the build's messages):")
    split = [
        [part, *(f"{statistics.median(e[part] for e in t[names[k]].extra):.2f}" for k in split_of)]
        for part in PHASES
    ]
    split.append(["total", *(f"{t[names[k]].median:.2f}" for k in split_of)])
    print(common.table(["phase", *split_of], split))
    for key in names:
        bad = [
            e
            for e in t[names[key]].extra
            if e["records"] != corpus.dicom_members or e["raw"] != corpus.dicom_bytes or e["errors"]
        ]
        if bad:
            print(
                f"WARNING: {names[key]} packed {bad[0]['records']} records / {bad[0]['raw']} "
                f"bytes with {bad[0]['errors']} errors, expected {corpus.dicom_members} / "
                f"{corpus.dicom_bytes}"
            )
    ours, base = t[names["ours"]], t[names["base"]]
    ratio = base.median / ours.median
    print()
    print(common.figure("ours MB/s (absolute)", mb_in / ours.median, " MB/s"))
    print(common.figure("baseline MB/s (absolute)", mb_in / base.median, " MB/s"))
    print(check("ours / single-process adapter baseline", ratio, TARGET_BUILD))
    print(f"{'parallel efficiency vs 2x baseline (2 cores)':<44s} {ratio / 2:10.0%}")
    cpu_ratio = ours.cpu_median / base.cpu_median
    print(
        common.figure(
            "CPU time: ours / baseline (cost ratio)",
            cpu_ratio,
            "x",
            f"(all processes; on 2 free cores ours could reach at most ~{2 / cpu_ratio:.2f}x)",
        )
    )
    if "local" in names:
        print(
            common.figure(
                "(ref) 1-process run_build / baseline",
                base.median / t[names["local"]].median,
                "x",
                "(1.0 = the core costs nothing beyond the adapter's builder)",
            )
        )
        print(
            common.figure(
                "(ref) adapter thread pool / baseline",
                base.median / t[names["threads"]].median,
                "x",
            )
        )
    print(
        common.figure("(ref) dicom_p10 build MB/s (Spark)", mb_in / t[names["p10"]].median, " MB/s")
    )


def report_reads(t: dict[str, common.Timing], names: dict[str, str], info: dict[str, Any]) -> None:
    k = info["reads"]
    print(
        f"\n## pixel-array reads: {k} of {info['records']} records in random order, one per "
        f"call, 1 process ({info['packs'][0]} dicom_patient / {info['packs'][1]} dicom_p10 "
        "packs, kept open)"
    )
    rows = [
        [
            tm.name,
            f"{tm.median:.2f}",
            tm.spread(),
            f"{k / tm.median:,.0f}",
            f"{tm.median / k * 1e3:.2f}",
            f"{tm.extra[-1] / common.MB / tm.median:,.0f}",
            f"{tm.cpu_median:.2f}",
        ]
        for tm in (t[n] for n in names.values())
    ]
    print(
        common.table(
            ["variant", "median s", "spread s", "reads/s", "ms/read", "pixel MB/s", "CPU s"], rows
        )
    )
    ours = t[names["ours"]].median
    print()
    print(common.figure("dicom_patient reads/s (absolute)", k / ours, " /s"))
    print(
        common.figure(
            "dicom_patient / dicom_p10 + pydicom",
            t[names["base"]].median / ours,
            "x",
            "(reads/s; no target)",
        )
    )
    print(
        common.figure("(ref) dicom_patient / dicom_p10 native", t[names["p10"]].median / ours, "x")
    )
    print(
        common.figure(
            "(ref) RecordDataset time / raw reader time",
            ours / t[names["raw"]].median,
            "x",
            "(1.0 = RecordDataset adds nothing)",
        )
    )


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def main() -> None:
    from iac_spark.spark_executor import SparkExecutor

    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--reads", type=int, default=500, help="records read per run (default 500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled read order")
    p.add_argument(
        "--no-refs",
        action="store_true",
        help="skip the LocalExecutor and adapter thread-pool build references",
    )
    p.add_argument(
        "--extra",
        type=Path,
        action="append",
        default=[],
        help="another folder of real .dcm files for the real-data figure",
    )
    args = p.parse_args()
    runs = common.runs_of(args)
    corpus = common.get_corpus(common.spec_of(args), args.out)
    work = (args.out / "layouts-work").resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(
        f"iac_spark from {os.path.dirname(iac_spark.__file__)}; iatro-iac-adapters "
        f"{importlib.metadata.version('iatro-iac-adapters')}",
        flush=True,
    )
    print("real data: pydicom's CT / MR test files, both layouts (local executor)", flush=True)
    real = real_data(work, args.extra)
    spark = common.spark_session("local[2]")
    builds, build_names = time_builds(corpus, work, SparkExecutor(spark), runs, not args.no_refs)
    print("cataloguing the corpus once per layout for the reads (untimed):", flush=True)
    catalogs = build_catalogs(spark, corpus, work)
    spark.stop()  # the reads need no JVM
    reads, read_names, read_info = time_reads(catalogs, args.reads, args.seed, runs)
    shutil.rmtree(work, ignore_errors=True)

    common.header("bench/layouts.py: dicom_patient vs dicom_p10 and the zips", corpus, runs)
    report_bytes(corpus, builds, build_names, real)
    report_build(corpus, builds, build_names)
    report_reads(reads, read_names, read_info)
    print(
        "\n(catalogs for the reads, one build each, spark, meta=false: "
        + ", ".join(f"{k} {s:.1f} s" for k, (_, s) in catalogs.items())
        + ")"
    )
    if args.quick:  # common.footer's note, in this script's words (PASS / MISS)
        print("\n--quick: a smoke test on a small corpus; fixed costs dominate the build and")
        print("read times, so PASS / MISS of the build target only means something for the full")
        print("run (no --quick). The stored-bytes ratios hardly depend on the corpus size.")
    common.footer()


if __name__ == "__main__":
    main()
