"""Pack read benchmark: random single reads and batched reads vs reading from the zips.

Targets (issue): random single-record reads >= 2x faster than from the source zips;
batched ``read_many`` >= 600 MB/s of decoded bytes.

Packs are built once from the corpus by the build core, ``run_build(survey(discover([root])),
out, executor=LocalExecutor(), scan_options={"meta": False})`` (default codec: zstd level 3;
the local executor gives the same packs as the Spark one, with no JVM), and cached under
``bench_out/packs-<corpus key>-zstd3/``.
Every pack file and every zip is read once before timing: both sides are warm-cache
(the OS page cache holds the files), so the comparison is CPU and syscalls, not disk.

(a) random single reads, N records drawn with a fixed seed over all packs:
    ours      ``VariableRecordPack`` objects opened once per pack (as a loader keeps
              them), ``pack.read(row)`` per record (zstd decode included)
    baseline  per record ``zipfile.ZipFile(path)`` then ``.read(member)`` (a loader over
              thousands of archives cannot keep them all open) (inflate included)
    (ref)     zips kept open: one ``ZipFile`` per archive opened beforehand
(b) batched: every row of every pack, in chunks of rows, ``read_many(chunk, workers=2)``,
    MB/s of decoded bytes; references: other chunk sizes, ``workers=1``, and the zips
    read sequentially in one thread (each zip opened once).

    .venv/bin/python bench/read.py            # full: 2,000 CT slices, 3 runs
    .venv/bin/python bench/read.py --quick    # smoke test: 200 slices, 1 run
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import time
import zipfile
from pathlib import Path

import common
from iatro.iac import VariableRecordPack


def get_packs(corpus: common.Corpus, out: Path) -> tuple[list[str], float | None]:
    """Pack paths built from ``corpus`` (cached); second item = build seconds if built now."""
    root = (out / f"packs-{corpus.key}-zstd3").resolve()
    marker = root / "_packs.json"
    if marker.exists():
        paths = json.loads(marker.read_text())["packs"]
        if paths and all(Path(p).exists() for p in paths):
            return paths, None
    from iac_spark.inputs import discover, survey
    from iac_spark.packing import LocalExecutor, run_build

    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    result = run_build(
        survey(discover([str(corpus.root)])), str(root), executor=LocalExecutor(),
        dataset="bench", scan_options={"meta": False},
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    paths = [p.path for p in result.packs]
    marker.write_text(json.dumps({"packs": paths, "summary": result.summary()}, indent=1))
    print(f"built packs: {result.summary()}", flush=True)
    return paths, elapsed


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=None, help="random reads (default 500, --quick 100)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    runs = common.runs_of(args)
    n_random = args.n or (100 if args.quick else 500)
    corpus = common.get_corpus(common.spec_of(args), args.out)
    pack_paths, build_s = get_packs(corpus, args.out)

    packs = [VariableRecordPack(pth) for pth in pack_paths]  # opened once, kept open
    records: list[tuple[int, int, str, str]] = []  # (pack, row, source_path, source_member)
    for i, pk in enumerate(packs):
        idx = pk.index_table
        for row, (sp, sm) in enumerate(
            zip(idx["source_path"].to_pylist(), idx["source_member"].to_pylist(), strict=True)
        ):
            records.append((i, row, sp, sm))
    sample = random.Random(args.seed).sample(records, min(n_random, len(records)))

    # warm cache for both sides, and check that both return the same bytes
    warmed = common.warm_files([*pack_paths, *corpus.zips])
    for i, row, sp, sm in sample:
        with zipfile.ZipFile(sp) as zf:
            if packs[i].read(row) != zf.read(sm):
                raise SystemExit(f"MISMATCH: pack {pack_paths[i]} row {row} != {sp}!{sm}")
    print(
        f"warm: read {warmed / common.MB:,.0f} MB of packs + zips; {len(sample)} samples verified"
    )

    lat: dict[str, list[float]] = {"ours": [], "zip": [], "zip-open": []}

    def ours_random() -> int:
        total = 0
        for i, row, _sp, _sm in sample:
            t0 = time.perf_counter()
            total += len(packs[i].read(row))
            lat["ours"].append(time.perf_counter() - t0)
        return total

    def zip_random() -> int:
        total = 0
        for _i, _row, sp, sm in sample:
            t0 = time.perf_counter()
            with zipfile.ZipFile(sp) as zf:
                total += len(zf.read(sm))
            lat["zip"].append(time.perf_counter() - t0)
        return total

    open_zips = {z: zipfile.ZipFile(z) for z in corpus.zips}

    def zip_open_random() -> int:
        total = 0
        for _i, _row, sp, sm in sample:
            t0 = time.perf_counter()
            total += len(open_zips[sp].read(sm))
            lat["zip-open"].append(time.perf_counter() - t0)
        return total

    def batched(chunk: int, workers: int) -> int:
        total = 0
        for pk in packs:
            n = pk.record_count
            for start in range(0, n, chunk):
                for rec in pk.read_many(range(start, min(start + chunk, n)), workers=workers):
                    total += len(rec)
        return total

    def zip_sequential() -> int:
        total = 0
        for z in corpus.zips:
            with zipfile.ZipFile(z) as zf:
                for info in zf.infolist():
                    if info.filename.endswith(".dcm"):
                        total += len(zf.read(info))
        return total

    n_a = {
        "ours": "ours: pack.read(row), packs kept open",
        "zip": "baseline: ZipFile(path).read(member) per read",
        "zip-open": "(ref) zips kept open: zf.read(member)",
    }
    print("timing (a) random single reads:", flush=True)
    ta = common.interleaved(
        [(n_a["ours"], ours_random), (n_a["zip"], zip_random), (n_a["zip-open"], zip_open_random)],
        runs,
    )
    n_b = {
        "main": "ours: read_many, 128-row chunks, workers=2",
        "c64": "(ref) read_many, 64-row chunks, workers=2",
        "c256": "(ref) read_many, 256-row chunks, workers=2",
        "w1": "(ref) read_many, 128-row chunks, workers=1",
        "zip": "(ref) zips read sequentially, 1 thread",
    }
    print("timing (b) batched reads:", flush=True)
    tb = common.interleaved(
        [
            (n_b["main"], lambda: batched(128, 2)),
            (n_b["c64"], lambda: batched(64, 2)),
            (n_b["c256"], lambda: batched(256, 2)),
            (n_b["w1"], lambda: batched(128, 1)),
            (n_b["zip"], zip_sequential),
        ],
        runs,
    )
    for z in open_zips.values():
        z.close()

    common.header("bench/read.py: pack reads vs zip reads", corpus, runs)
    stored = sum(Path(pth).stat().st_size for pth in pack_paths)
    built = "reused from cache" if build_s is None else f"built in {build_s:.0f} s"
    print(
        f"packs: {len(pack_paths)} file(s), {len(records)} records, {stored / common.MB:,.0f} MB "
        f"(zstd level 3, {built}); warm cache on both sides"
    )
    print()
    print(f"(a) random single-record reads: {len(sample)} records, seed {args.seed}")
    rows = []
    for key in ("ours", "zip", "zip-open"):
        tm = ta[n_a[key]]
        ls = sorted(lat[key])
        rows.append(
            [
                tm.name, f"{tm.median:.3f}", tm.spread(), f"{len(sample) / tm.median:,.0f}",
                f"{statistics.median(ls) * 1e6:,.0f}", f"{ls[int(0.95 * (len(ls) - 1))] * 1e6:,.0f}",
                f"{tm.extra[-1] / len(sample) / 1024:,.0f}",
            ]
        )  # fmt: skip
    print(
        common.table(
            ["variant", "median s", "spread s", "reads/s", "p50 us", "p95 us", "KiB/read"], rows
        )
    )
    ratio_a = ta[n_a["zip"]].median / ta[n_a["ours"]].median
    ratio_open = ta[n_a["zip-open"]].median / ta[n_a["ours"]].median
    print("(p50/p95: per-read latency over all runs)")
    print()
    print(f"(b) batched reads: all {len(records)} records of all packs, decoded bytes")
    rows = []
    for key in ("main", "c64", "c256", "w1", "zip"):
        tm = tb[n_b[key]]
        mb = tm.extra[-1] / common.MB
        rows.append(
            [tm.name, f"{tm.median:.2f}", tm.spread(), f"{mb:,.0f}", f"{mb / tm.median:,.0f}"]
        )
    print(common.table(["variant", "median s", "spread s", "MB", "MB/s"], rows))
    mbps = tb[n_b["main"]].extra[-1] / common.MB / tb[n_b["main"]].median
    ratio_b = tb[n_b["zip"]].median / tb[n_b["main"]].median
    print()
    print(
        common.figure(
            "random reads/s, ours (absolute)", len(sample) / ta[n_a["ours"]].median, " r/s"
        )
    )
    print(common.verdict("random reads: ours / zip open-per-read", ratio_a, 2))
    print(common.figure("random reads: ours / zips kept open (ref)", ratio_open, "x"))
    print(common.verdict("batched read_many MB/s (128, workers=2)", mbps, 600, " MB/s"))
    print(common.figure("batched: ours / sequential zip read (ref)", ratio_b, "x"))
    common.footer(args.quick)


if __name__ == "__main__":
    main()
