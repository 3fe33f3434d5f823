"""``iac-spark``: build packs, query the catalog, verify, vacuum, inspect a pack.

Examples (from the repo root, after ``make demo``)::

    iac-spark build demo_data --out demo_out --dataset demo
    iac-spark sql demo_out "SELECT modality, count(*) AS records FROM records GROUP BY modality"
    iac-spark verify demo_out
    iac-spark vacuum demo_out --dry-run
    iac-spark info demo_out/packs/demo/<pack_id>.iac
    iac-spark scan demo_data            # metadata scan only: counts per modality/series, errors

Exit codes: 0 success (a build with error rows still succeeds; they are reported),
1 ``verify`` found problems, 2 fatal failure (bad arguments, missing Java, failed build).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from . import __version__
from .errors import IacSparkError, OptionError
from .progress import format_bytes

__all__ = ["format_table", "main"]


def format_table(table: pa.Table, *, max_width: int = 60) -> str:
    """Render an Arrow table as aligned text (long cells cut with ``…``).

    >>> print(format_table(pa.table({"modality": ["CT", "MR"], "records": [160, 80]})))
    modality | records
    ---------+--------
    CT       |     160
    MR       |      80
    (2 rows)
    """

    def cell(v: Any) -> str:
        s = "NULL" if v is None else str(v)
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    names = table.column_names
    rows = [[cell(v) for v in r.values()] for r in table.to_pylist()]
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) for f in table.schema]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]

    def fmt(values: Sequence[str]) -> str:
        return " | ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    lines = [fmt(names)]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [fmt(r) for r in rows]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def _emit(table: pa.Table, fmt: str) -> None:
    if fmt == "table":
        print(format_table(table))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(table.column_names)
        for row in table.to_pylist():
            writer.writerow(["" if v is None else v for v in row.values()])
        sys.stdout.write(buf.getvalue())
    else:
        print(json.dumps(table.to_pylist(), ensure_ascii=False, default=str, indent=1))


def _progress(line: str) -> None:
    print(f"  … {line}", file=sys.stderr, flush=True)


def _cmd_build(args: argparse.Namespace) -> int:
    from . import catalog
    from .packing.layout import RecordCodec
    from .session import local_session

    kwargs: dict[str, Any] = {
        "codec": RecordCodec.create("zstd", level=args.zstd_level),
        "shard_target_bytes": args.shard_target_bytes,
        "pack_target_bytes": args.pack_target_bytes,
        "num_tasks": args.num_tasks,
    }
    if args.layout:
        kwargs["layout"] = args.layout
    kwargs["jxl_effort"] = args.jxl_effort
    kwargs["fallback"] = args.fallback
    if args.compressed and args.kind != "text":
        raise OptionError("--compressed goes with --kind text --layout clinical_text_pair")
    spark = None if args.executor == "local" else (lambda: local_session(args.master))
    result = catalog.build(
        spark,  # a factory: Spark starts only if there is something to ingest
        args.sources, args.out, dataset=args.dataset, kind=args.kind, executor=args.executor,
        meta=args.meta, compressed=args.compressed or (), progress=_progress, **kwargs,
    )  # fmt: skip
    print(result.summary_table())
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    from . import catalog

    _emit(catalog.sql(args.out, args.query, as_of=args.as_of), args.format)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from . import catalog

    report = catalog.verify(args.out, decode=args.decode)
    print(report)
    return 0 if report.ok else 1


def _cmd_vacuum(args: argparse.Namespace) -> int:
    from . import catalog

    print(catalog.vacuum(args.out, dry_run=args.dry_run, retention_hours=args.retention_hours))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import os

    from iatro.iac import PackReader

    reader = PackReader(args.pack)
    try:
        header, slides, index = dict(reader.header), reader.slide_table, reader.index_table
    finally:
        reader.close()
    print(f"pack       {args.pack}")
    print(f"file size  {format_bytes(os.path.getsize(args.pack))}")
    print("header     " + json.dumps(header, sort_keys=True))
    print(f"series     {slides.num_rows}  (slide table)")
    print(f"records    {index.num_rows}  (index table)")
    if index.num_rows and "raw_length" in index.column_names:
        raw = sum(index.column("raw_length").to_pylist())
        stored = sum(index.column("length").to_pylist())
        print(
            f"data       {format_bytes(stored)} stored, {format_bytes(raw)} raw ({raw / max(stored, 1):.2f}x)"
        )
    print("\nslide table:")
    print(format_table(slides.slice(0, args.rows)))
    print("\nindex table:")
    print(format_table(index.slice(0, args.rows)))
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    from .session import local_session

    spark = local_session(args.master)
    if args.kind == "text":
        return _scan_text(spark, args.sources)
    df = spark.read.format("zipdcm").load(args.sources)
    cols = ["path", "member", "modality", "series_instance_uid", "patient_id", "error"]
    rows = df.select(*cols).toArrow()
    from collections import Counter

    good = [r for r in rows.to_pylist() if r["error"] is None]
    bad = [r for r in rows.to_pylist() if r["error"] is not None]
    by_mod = Counter(r["modality"] for r in good)
    series = Counter((r["patient_id"], r["modality"], r["series_instance_uid"]) for r in good)
    print(format_table(pa.table({"modality": list(by_mod), "instances": list(by_mod.values())})))
    print()
    print(
        format_table(
            pa.table(
                {
                    "patient_id": [k[0] for k in series],
                    "modality": [k[1] for k in series],
                    "series_instance_uid": [k[2] for k in series],
                    "instances": list(series.values()),
                }
            )
        )
    )
    print(f"\n{len(good)} DICOM members parsed, {len(bad)} error rows")
    for r in bad:
        print(f"  {r['error']}")
    return 0


def _scan_text(spark: Any, sources: Sequence[str]) -> int:
    from collections import Counter

    df = spark.read.format("ziptext").load(list(sources))
    rows = df.select("patient_id", "doc_type", "encoding", "status", "error").toArrow().to_pylist()
    good = [r for r in rows if r["status"] == "ok"]
    bad = [r for r in rows if r["status"] == "error"]
    by = Counter((r["doc_type"], r["encoding"]) for r in good)
    print(format_table(pa.table({
        "doc_type": [k[0] for k in by], "encoding": [k[1] for k in by], "notes": list(by.values()),
    })))  # fmt: skip
    patients = len({r["patient_id"] for r in good})
    print(f"\n{len(good)} notes of {patients} patients decoded, {len(bad)} error rows")
    for r in bad:
        print(f"  {r['error']}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="iac-spark", description="Zipped DICOM → .iac packs + Delta catalog"
    )
    p.add_argument("--version", action="version", version=f"iac-spark {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="scan sources and build packs into OUT (incremental)")
    b.add_argument("sources", nargs="+", help="zips, folders, globs or bare files")
    b.add_argument(
        "--kind",
        choices=("dicom", "text"),
        default="dicom",
        help="DICOM (default) or clinical notes",
    )
    b.add_argument(
        "--layout",
        choices=("dicom_p10", "dicom_patient", "clinical_text", "clinical_text_pair"),
        default=None,
        help="pack layout (default: dicom_p10 for DICOM, clinical_text for text)",
    )
    b.add_argument(
        "--jxl-effort",
        type=int,
        default=None,
        help="dicom_patient: JPEG XL effort 1-10 (default 2: smaller than the zips, fast)",
    )
    b.add_argument(
        "--fallback",
        choices=("dicom_p10",),
        default=None,
        help="dicom_patient: pack instances the layout cannot hold as dicom_p10 instead of errors",
    )
    b.add_argument(
        "--compressed",
        nargs="+",
        default=None,
        help="with --layout clinical_text_pair: the teacher-compressed notes (same relative paths)",
    )
    b.add_argument("--out", required=True, help="output root (packs + _catalog)")
    b.add_argument("--dataset", default="default", help="dataset name: OUT/packs/<dataset>/")
    b.add_argument(
        "--executor",
        choices=("spark", "local"),
        default="spark",
        help="where tasks run: Spark (default) or this process (no JVM needed)",
    )
    b.add_argument("--master", default="local[*]", help="Spark master for the local session")
    b.add_argument(
        "--no-meta",
        dest="meta",
        action="store_false",
        help="leave the DICOM JSON header out of records.meta (faster scan)",
    )
    b.add_argument("--zstd-level", type=int, default=3)
    b.add_argument("--shard-target-bytes", type=int, default=None)
    b.add_argument("--pack-target-bytes", type=int, default=None)
    b.add_argument("--num-tasks", type=int, default=None, help="pack tasks (default: one per core)")
    b.set_defaults(func=_cmd_build)

    s = sub.add_parser("sql", help="run SQL over packs, records, sources, errors, runs")
    s.add_argument("out")
    s.add_argument("query")
    s.add_argument("--format", choices=("table", "csv", "json"), default="table")
    s.add_argument(
        "--as-of",
        type=int,
        default=None,
        help="catalog as of version N of the runs table (the catalog_version a build prints)",
    )
    s.set_defaults(func=_cmd_sql)

    v = sub.add_parser(
        "verify", help="check every pack header and record crc32 against the catalog"
    )
    v.add_argument("out")
    v.add_argument(
        "--decode", action="store_true", help="also decode every record and check its raw CRC"
    )
    v.set_defaults(func=_cmd_verify)

    c = sub.add_parser(
        "vacuum",
        help="remove pack files, staging and catalog rows of runs that never committed",
    )
    c.add_argument("out")
    c.add_argument("--dry-run", action="store_true")
    c.add_argument(
        "--retention-hours",
        type=float,
        default=1.0,
        help="keep what a run not (yet) committed left while it is younger than this, in case "
        "its build still runs (default 1; 0 removes every leftover: only when no build runs)",
    )
    c.set_defaults(func=_cmd_vacuum)

    i = sub.add_parser("info", help="show a pack's header and tables")
    i.add_argument("pack")
    i.add_argument("--rows", type=int, default=5, help="table rows to show")
    i.set_defaults(func=_cmd_info)

    sc = sub.add_parser(
        "scan", help="metadata scan only: counts per modality and series, error rows"
    )
    sc.add_argument("sources", nargs="+")
    sc.add_argument("--kind", choices=("dicom", "text"), default="dicom")
    sc.add_argument("--master", default="local[*]")
    sc.set_defaults(func=_cmd_scan)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``iac-spark`` console script."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except IacSparkError as exc:
        print(f"iac-spark: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("iac-spark: interrupted", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
