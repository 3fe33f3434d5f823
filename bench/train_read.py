"""Training-read benchmark: decoded pixels through RecordDataset vs the zips; cohort SQL latency.

Targets (issue 9): decoded pixel samples/s through ``RecordDataset`` (random order, 2 worker
processes) >= 3x the user's alternative measured in the same run; a cohort SQL query over a
~100k-record catalog <= 1 s warm; a single-record lookup by SOPInstanceUID through the
catalog <= 20 ms warm.

(a) pixels: the read.py corpus (512x512 CT, 16-bit), catalogued once with the local executor
    (``iac_spark.catalog.build(None, [root], out, executor="local")``) and cached under
    ``bench_out/catalog-<corpus key>/``. One epoch over every record in a shuffled order
    (``seed``, a new epoch each run), batches of 32, 2 worker processes (fork), the same
    order, batches and worker machinery (``iac_spark.data.workers.ordered_batches``) for
    every variant, so only the per-sample work differs:
      ours      ``RecordDataset(out, query, decode="pixels").iter_batches(32, shuffle=True,
                workers=2)``: pack row read (mmap, zstd), pixels decoded from the P10 bytes
      baseline  per sample ``zipfile.ZipFile(path).read(member)`` then
                ``pydicom.dcmread(BytesIO(data)).pixel_array`` (the loader a user writes
                over the source zips; thousands of archives cannot all be kept open)
      (ref)     ours with pydicom's decode forced (the shortcut for plain uncompressed
                monochrome pixels off), and both sides in one process (workers=0)
    Both return the pixels to the parent process. Every zip and pack is read once before
    timing (warm page cache on both sides) and both sides' pixels are checked equal.
(b) SQL: a ~100k-record catalog of small slices (the scale.py corpus: 1,400 zips x 71 CT
    slices 32x32, ``meta`` JSON on), built once with the local executor and cached. Each
    query runs once to warm up, then ``runs`` x 5 times; medians:
      warm      an open ``iac_spark.catalog.open(out)`` (its SQL session made once), ``.sql(q)``
      one-shot  ``iac_spark.catalog.sql(out, q)`` (reads ``runs``, makes the session: what a
                script or ``iac-spark sql`` pays per query)
    queries: a records cohort (attributes), a series cohort (the view), a studies cohort;
    ``RecordDataset(out, cohort)`` construction; lookups of one random SOPInstanceUID (warm:
    ``Catalog.lookup(uid)`` + one pack row read, packs open, the catalog's UID index read once
    before timing; (ref) the same through one SQL query; one-shot:
    ``RecordDataset(out, uid query)[0]``).

    .venv/bin/python bench/train_read.py            # full: 2,000 CT slices 512x512; 99,400-record catalog
    .venv/bin/python bench/train_read.py --quick    # smoke test: 200 slices; 9,800-record catalog
"""

from __future__ import annotations

import cProfile
import hashlib
import io
import json
import pstats
import random
import statistics
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import common
import pydicom

import iac_spark.catalog as cat
import iac_spark.data.decode as decode_mod
from iac_spark.catalog.schema import SCHEMAS
from iac_spark.data import RecordDataset
from iac_spark.data.order import cut_batches
from iac_spark.data.workers import ordered_batches
from iac_spark.testing.corpus import CorpusSpec

#: (b) ~100k records of small slices: the scale.py 100k corpus (shared cache), --quick its 10k.
SQL_SPEC = CorpusSpec(patients=1400, ct_slices=71, mr_slices=0, ct_size=32, seed=0)
SQL_QUICK_SPEC = CorpusSpec(patients=1400, ct_slices=7, mr_slices=0, ct_size=32, seed=0)
BATCH = 32
WORKERS = 2
PIXELS_QUERY = (
    "SELECT pack_id, row, sop_instance_uid, source_path, source_member FROM records "
    "WHERE NOT retired ORDER BY pack_id, row"
)
COHORTS = {
    "records": (
        "SELECT pack_id, row, sop_instance_uid FROM records WHERE NOT retired AND modality = 'CT' "
        "AND body_part_examined = 'CHEST' AND slice_thickness <= 3 "
        "AND study_date >= DATE '2020-01-01' AND manufacturer LIKE 'Synth%'"
    ),
    "series": (
        "SELECT series_instance_uid, patient_id, num_instances, slice_step, z_extent FROM series "
        "WHERE modality = 'CT' AND num_instances > 50 AND NOT has_position_gap "
        "AND slice_thickness <= 3"
    ),
    "studies": (
        "SELECT study_instance_uid, patient_id, num_series FROM studies "
        "WHERE array_has(modalities, 'CT') AND study_date >= DATE '2020-01-01'"
    ),
}


def get_catalog(corpus: common.Corpus, out: Path) -> tuple[str, float | None]:
    """The catalog of ``corpus`` (cached); second item = build seconds if built now."""
    root = (out / f"catalog-{corpus.key}").resolve()
    marker = root / "_bench_catalog.json"
    # a catalog made with other table schemas is rebuilt (the views read the current ones)
    schema = hashlib.sha1(
        repr(sorted((k, str(v)) for k, v in SCHEMAS.items())).encode()
    ).hexdigest()
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("records") == corpus.dicom_members and info.get("schema") == schema:
            return str(root), None
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    print(f"building the catalog of {corpus.dicom_members:,} members under {root} ...", flush=True)
    t0 = time.perf_counter()
    result = cat.build(None, [str(corpus.root)], str(root), dataset="bench", executor="local")
    elapsed = time.perf_counter() - t0
    marker.write_text(json.dumps({"records": result.records, "seconds": elapsed, "schema": schema}))
    print(f"built in {elapsed:.0f} s: {result.summary()}", flush=True)
    return str(root), elapsed


class ZipPixels:
    """The baseline loader: each sample read from its source zip and decoded by pydicom."""

    def __init__(self, paths: Sequence[str], members: Sequence[str]) -> None:
        self.paths, self.members = list(paths), list(members)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        out = []
        for i in indices:
            with zipfile.ZipFile(self.paths[i]) as zf:
                data = zf.read(self.members[i])
            out.append({"pixels": pydicom.dcmread(io.BytesIO(data)).pixel_array})
        return out


def pixel_epochs(args: Any, runs: int) -> None:
    corpus = common.get_corpus(common.spec_of(args), args.out)
    out, build_s = get_catalog(corpus, args.out)
    ds = RecordDataset(out, PIXELS_QUERY, decode="pixels")
    cols = ds.table  # the query's columns: where the baseline finds each member
    base = ZipPixels(
        cols.column("source_path").to_pylist(), cols.column("source_member").to_pylist()
    )
    n = len(ds)
    warmed = common.warm_files([*(p.path for p in ds.packs), *corpus.zips])
    check = random.Random(args.seed).sample(range(n), min(20, n))
    for i, want in zip(check, base.__getitems__(check), strict=True):
        if not (ds[i]["pixels"] == want["pixels"]).all():
            raise SystemExit(f"MISMATCH: sample {i} ({ds.location(i)}) differs from its zip member")
    print(f"warm: read {warmed / common.MB:,.0f} MB of packs + zips; {len(check)} samples verified")
    epoch = iter(range(10**6))

    def run(source: Any, workers: int) -> Callable[[], int]:
        def go() -> int:
            order = ds.order(shuffle=True, seed=args.seed, epoch=next(epoch))
            done = 0
            for b in ordered_batches(
                source, cut_batches(order, BATCH), workers=workers, mp_context="fork"
            ):
                done += len(b)
            assert done == n
            return done

        return go

    def pydicom_only(workers: int) -> Callable[[], int]:
        inner = run(ds, workers)

        def go() -> int:
            saved = decode_mod.native_pixel_array
            decode_mod.native_pixel_array = lambda _b: None  # type: ignore[assignment]
            try:  # forked workers inherit the patched module
                return inner()
            finally:
                decode_mod.native_pixel_array = saved

        return go

    names = {
        "ours": f"ours: RecordDataset pixels, {WORKERS} workers",
        "base": f"baseline: zip read + dcmread().pixel_array, {WORKERS} workers",
        "pyd": f"(ref) ours, pydicom decode only, {WORKERS} workers",
        "ours1": "(ref) ours, in process (workers=0)",
        "base1": "(ref) baseline, in process",
    }
    print("timing (a) pixel epochs:", flush=True)
    t = common.interleaved(
        [
            (names["ours"], run(ds, WORKERS)),
            (names["base"], run(base, WORKERS)),
            (names["pyd"], pydicom_only(WORKERS)),
            (names["ours1"], run(ds, 0)),
            (names["base1"], run(base, 0)),
        ],
        runs,
    )
    common.header(
        "bench/train_read.py (a): decoded pixel samples through RecordDataset vs the zips",
        corpus,
        runs,
    )
    built = "reused from cache" if build_s is None else f"built in {build_s:.0f} s"
    print(
        f"catalog: {n:,} records in {len(ds.packs)} pack(s) ({built}); shuffled epochs, batches of {BATCH}"
    )
    rows = [
        [t[v].name, f"{t[v].median:.2f}", t[v].spread(), f"{n / t[v].median:,.0f}",
         f"{t[v].median / n * 1e3:.2f}"]
        for v in names.values()
    ]  # fmt: skip
    print(common.table(["variant", "median s", "spread s", "samples/s", "ms/sample"], rows))
    ratio = t[names["base"]].median / t[names["ours"]].median
    print()
    print(common.figure("pixel samples/s, ours (absolute)", n / t[names["ours"]].median, " /s"))
    print(common.verdict("pixel samples/s: ours / baseline (2 workers)", ratio, 3))
    print(
        common.figure(
            "(ref) ours / ours with pydicom decode",
            t[names["pyd"]].median / t[names["ours"]].median,
            "x",
        )
    )
    print(
        common.figure(
            "(ref) in process: ours / baseline",
            t[names["base1"]].median / t[names["ours1"]].median,
            "x",
        )
    )


def median_ms(fn: Callable[[], Any], reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def sql_latency(args: Any, runs: int) -> None:
    corpus = common.get_corpus(SQL_QUICK_SPEC if args.quick else SQL_SPEC, args.out)
    out, build_s = get_catalog(corpus, args.out)
    reps = max(1, runs) * 5
    c = cat.open(out)
    n = c.sql("SELECT count(*) AS n FROM records WHERE NOT retired").column(0)[0].as_py()
    rows: list[list[str]] = []
    worst_warm = 0.0
    results = {}
    print("timing (b) SQL:", flush=True)
    for name, q in COHORTS.items():
        results[name] = c.sql(q).num_rows
        warm = median_ms(lambda q=q: c.sql(q), reps)
        one = median_ms(lambda q=q: cat.sql(out, q), reps)
        worst_warm = max(worst_warm, warm)
        rows.append([f"{name} cohort ({results[name]:,} rows)", f"{warm:,.1f}", f"{one:,.1f}"])
    build_ds = median_ms(lambda: RecordDataset(out, COHORTS["records"]), max(2, reps // 2))
    rows.append(
        [
            f"RecordDataset(out, records cohort) ({results['records']:,} samples)",
            "-",
            f"{build_ds:,.1f}",
        ]
    )
    uids = c.sql("SELECT sop_instance_uid FROM records WHERE NOT retired").column(0).to_pylist()
    pick = random.Random(args.seed)
    packs: dict[str, Any] = {}
    paths = {
        r["pack_id"]: c.pack_path(r["path"])
        for r in c.sql("SELECT pack_id, path FROM packs").to_pylist()
    }

    def read_hit(hit: dict[str, Any]) -> bytes:
        from iatro.iac import VariableRecordPack

        pk = packs.get(hit["pack_id"]) or packs.setdefault(
            hit["pack_id"], VariableRecordPack(paths[hit["pack_id"]])
        )
        return pk.read(hit["row"])

    def lookup_warm() -> bytes:
        return read_hit(c.lookup(pick.choice(uids)).to_pylist()[0])

    def lookup_sql() -> bytes:
        uid = pick.choice(uids)
        return read_hit(
            c.sql(
                f"SELECT pack_id, row FROM records WHERE NOT retired AND sop_instance_uid = '{uid}'"
            ).to_pylist()[0]
        )

    def lookup_one_shot() -> bytes:
        uid = pick.choice(uids)
        q = f"SELECT sop_instance_uid FROM records WHERE NOT retired AND sop_instance_uid = '{uid}'"
        return RecordDataset(out, q)[0]["bytes"]

    c.lookup(uids[0])  # the first lookup reads the UID index of the open catalog
    warm_lookup = median_ms(lookup_warm, reps * 4)
    sql_lookup = median_ms(lookup_sql, reps * 4)
    one_lookup = median_ms(lookup_one_shot, reps)
    rows.append(
        [
            "lookup by SOPInstanceUID + pack read (1 record)",
            f"{warm_lookup:,.1f}",
            f"{one_lookup:,.1f}",
        ]
    )
    rows.append(["(ref) the same through one SQL query", f"{sql_lookup:,.1f}", "-"])
    common.header(
        "bench/train_read.py (b): cohort SQL and single-record lookup latency", corpus, runs
    )
    built = "reused from cache" if build_s is None else f"built in {build_s:.0f} s"
    print(
        f"catalog: {n:,} live records ({built}); each figure: median of {reps} runs after one warm-up"
    )
    print(common.table(["query", "warm ms", "one-shot ms"], rows))
    print(
        "(warm: an open catalog.open(out), its SQL session reused; one-shot: catalog.sql(out, q) /"
    )
    print(
        " RecordDataset(out, q): reads runs and makes a new SQL session per call; a warm lookup is"
    )
    print(" Catalog.lookup(uid), which reads the UID index of the open catalog once)")
    print()
    print(common.verdict("cohort SQL warm, worst of 3 (ms; <= 1000)", 1000 / worst_warm, 1, "x"))
    print(common.figure("  worst warm cohort query", worst_warm, " ms"))
    print(common.verdict("lookup by SOPInstanceUID warm (ms; <= 20)", 20 / warm_lookup, 1, "x"))
    print(common.figure("  warm lookup", warm_lookup, " ms"))
    if args.profile or worst_warm > 1000 or warm_lookup > 20:
        profile(out, c, uids)


def profile(out: str, c: cat.Catalog, uids: list[str]) -> None:
    """Where the time of a warm lookup and of a one-shot query goes."""
    q = f"SELECT pack_id, row FROM records WHERE NOT retired AND sop_instance_uid = '{uids[0]}'"
    for label, fn in (
        ("warm lookup query", lambda: c.sql(q)),
        ("one-shot catalog.sql", lambda: cat.sql(out, q)),
    ):
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(5):
            fn()
        pr.disable()
        print(f"\nprofile: {label} x5 (cumulative, top 12)")
        pstats.Stats(pr).sort_stats("cumulative").print_stats(12)


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--profile",
        action="store_true",
        help="print the SQL profiles even when the targets are met",
    )
    p.add_argument("--only", choices=["pixels", "sql"], default=None, help="run one part only")
    args = p.parse_args()
    runs = common.runs_of(args)
    if args.only in (None, "pixels"):
        pixel_epochs(args, runs)
    if args.only in (None, "sql"):
        sql_latency(args, runs)
    common.footer(args.quick)


if __name__ == "__main__":
    main()
