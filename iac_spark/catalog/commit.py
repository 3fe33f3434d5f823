"""Commit one build to the catalog: one consistent change, made visible by a single ``runs`` row.

Order of the Delta commits for run ``R`` (each retried on conflicts, see :mod:`.store`):

1. remove leftovers of an earlier, interrupted commit of the same ``R`` (rows of a run
   that never committed are invisible, so this is safe and makes commits retryable);
2. append ``records``, ``sources``, ``errors`` rows of ``R``;
3. retire the rows of re-ingested (changed) sources: ``records.retired = true,
   retired_by_run = R`` and ``sources.superseded = true, superseded_by_run = R`` for the
   committed, not yet (effectively) retired rows of those paths;
4. append the ``packs`` rows;
5. append the ``runs`` row with ``status = 'committed'``: **the commit point**. Readers
   filter every table to committed runs and resolve retirement flags against them
   (:mod:`.snapshot`), so until this row lands nothing of ``R`` is visible, and a crash
   anywhere before it leaves the catalog exactly as it was (the published pack files
   become garbage for :func:`iac_spark.catalog.vacuum`).

Concurrent commits (threads or processes, into the same OUT) are safe: appends are
blind, updates that lose a race are retried on the fresh table state, and no step ever
removes a committed row. Two builds that ingest *the same* source concurrently both pack
it; with ``planned_version`` (the catalog version their plan saw, passed by
:func:`iac_spark.catalog.build`) the later committer also retires the rows of those
sources that runs committed since its plan, just before its own commit point, so one
copy stays live. Only two commits overlapping in that last instant can both stay live
(never neither); ingesting a given source from one build at a time avoids even that.

Example:
    >>> commit_build("/tmp/out", result, files, retire_paths=plan.retire_paths)  # doctest: +SKIP
    CommitResult(run_id='20261122T210000Z-3f2a9c1d', version=3, num_packs=2, ...)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import CatalogError
from ..inputs.discover import InputFile
from ..packing.build import BuildResult
from .rows import DUPLICATE, CatalogRows, catalog_rows
from .schema import TableName, to_table
from .snapshot import COMMITTED, FAILED, RETIRE_COLUMNS, Snapshot
from .spark_delta import catalog_store
from .store import CatalogStore, DeltaRsStore, sql_list, sql_str

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["CommitResult", "commit_build", "record_failed_run", "retire_sources"]


@dataclass(frozen=True)
class CommitResult:
    """What one commit added; ``version`` is the ``runs`` table version (the catalog version)."""

    run_id: str
    version: int
    num_packs: int
    num_records: int
    num_errors: int
    num_duplicates: int
    num_conflicts: int
    num_skipped: int
    num_sources: int
    retired_records: int
    superseded_sources: int


def _known_locations(snap: Snapshot, result: BuildResult) -> dict[tuple[str, int], str]:
    """Where the catalog keeps the instances this build found duplicated (for the error text)."""
    uids = sorted({d.sop_instance_uid for d in result.duplicates if d.kept_path is None})
    if not uids:
        return {}
    cols = [
        "sop_instance_uid",
        "raw_crc32",
        "pack_id",
        "row",
        "source_path",
        "source_member",
        "retired",
    ]
    recs = snap.table("records", columns=cols)
    recs = recs.filter(
        pc.and_(
            pc.is_in(recs.column("sop_instance_uid"), pa.array(uids)),
            pc.invert(recs.column("retired")),
        )
    )
    out: dict[tuple[str, int], str] = {}
    for r in recs.to_pylist():
        if r["raw_crc32"] is None:
            continue
        src = (
            r["source_path"]
            if r["source_member"] is None
            else f"{r['source_path']}!{r['source_member']}"
        )
        out.setdefault(
            (r["sop_instance_uid"], r["raw_crc32"]),
            f"pack {r['pack_id']} row {r['row']} (from {src})",
        )
    return out


def retire_sources(
    store: CatalogStore,
    run_id: str,
    paths: Iterable[str],
    committed: frozenset[str],
    *,
    only_runs: frozenset[str] | None = None,
) -> tuple[int, int]:
    """Flag the committed, still-live ``records`` / ``sources`` rows of ``paths`` as retired by ``run_id``.

    ``only_runs`` restricts it to rows of those (committed) runs. Returns (records
    retired, sources superseded). Rows already retired by a committed run keep their
    original ``*_by_run`` (time travel stays exact).
    """
    paths = sorted(set(paths))
    targets = committed if only_runs is None else committed & only_runs
    if not paths or not targets:
        return 0, 0
    counts = []
    for name in ("records", "sources"):
        flag, by = RETIRE_COLUMNS[name]
        predicate = (
            f"source_path IN {sql_list(paths)} AND run_id <> {sql_str(run_id)} AND run_id IN {sql_list(targets)} "
            f"AND ({flag} IS NULL OR {flag} = false OR {by} IS NULL OR {by} NOT IN {sql_list(committed)})"
        )
        counts.append(
            store.update(name, predicate=predicate, updates={flag: "true", by: sql_str(run_id)})
        )
    return counts[0], counts[1]


def _retire_concurrent(
    store: CatalogStore, run_id: str, paths: set[str], planned_version: int
) -> tuple[int, int]:
    """Retire rows of ``paths`` that runs committed after ``planned_version`` (they raced this build)."""
    now = Snapshot.load(store).committed
    before = (
        Snapshot.load(store, planned_version).committed if planned_version >= 0 else frozenset()
    )
    return retire_sources(store, run_id, paths, now, only_runs=now - before)


def _runs_row(
    result_run_id: str, dataset: str, started_at: datetime, status: str, rows: CatalogRows | None,
    num_duplicates: int = 0, num_conflicts: int = 0,
) -> pa.Table:  # fmt: skip
    return to_table("runs", [{
        "run_id": result_run_id, "dataset": dataset, "started_at": started_at,
        "committed_at": datetime.now(timezone.utc),
        "num_packs": rows.packs.num_rows if rows else 0, "num_records": rows.records.num_rows if rows else 0,
        "num_errors": rows.num_errors if rows else 0, "num_duplicates": num_duplicates,
        "num_conflicts": num_conflicts, "status": status,
    }])  # fmt: skip


def commit_build(
    out: str,
    result: BuildResult,
    files: Sequence[InputFile],
    *,
    retire_paths: Iterable[str] = (),
    fingerprints: Mapping[str, str] | None = None,
    started_at: datetime | None = None,
    store: CatalogStore | None = None,
    engine: Literal["delta-rs", "spark"] = "delta-rs",
    spark: SparkSession | None = None,
    catalog_name: str | None = None,
    planned_version: int | None = None,
) -> CommitResult:
    """Write ``result`` into the catalog under ``OUT/_catalog`` as one consistent change.

    ``files`` are the inputs the build scanned (one ``sources`` row each);
    ``retire_paths`` the re-ingested sources whose older rows are retired;
    ``fingerprints`` those computed by :func:`~iac_spark.catalog.plan_sources` (else
    computed now). The engine is delta-rs on ``OUT/_catalog`` unless ``engine="spark"`` or
    ``catalog_name`` (Unity Catalog ``catalog.schema.prefix`` → ``<prefix>_<table>``) asks for
    Spark Delta on ``spark`` (see :func:`~iac_spark.catalog.spark_delta.catalog_store`), or an
    explicit ``store`` is given. ``planned_version`` is the ``runs`` version the build's plan
    was made against (-1: there was no catalog); when given, rows of this build's sources
    committed by other runs since then are retired too (concurrent ingestion of one source).
    Raises :class:`CatalogError` if the run is already committed or the catalog
    cannot be written; nothing of the run is visible unless this returns.
    """
    store = store or catalog_store(out, spark=spark, engine=engine, catalog_name=catalog_name)
    started = started_at or datetime.now(timezone.utc) - timedelta(seconds=max(0.0, result.seconds))
    run_id = result.run_id
    try:
        store.ensure()
        snap = Snapshot.load(store)
        if run_id in set(snap.all_runs.column("run_id").to_pylist()):
            raise CatalogError(
                f"run {run_id} is already recorded in {store.location('runs')}; nothing written"
            )
        rows = catalog_rows(
            result, files, fingerprints=fingerprints, known_locations=_known_locations(snap, result)
        )
        leftovers: tuple[TableName, ...] = ("records", "sources", "errors", "packs")
        for name in leftovers:  # rows of an interrupted earlier commit of this run (invisible)
            store.delete(name, predicate=f"run_id = {sql_str(run_id)}")
        appends: tuple[tuple[TableName, pa.Table], ...] = (
            ("records", rows.records), ("sources", rows.sources), ("errors", rows.errors),
        )  # fmt: skip
        for name, table in appends:
            if table.num_rows:
                store.append(name, table, run_id=run_id)
        retire = {os.path.abspath(p) for p in retire_paths}
        committed = Snapshot.load(store).committed
        retired, superseded = retire_sources(store, run_id, retire, committed)
        if rows.packs.num_rows:
            store.append("packs", rows.packs, run_id=run_id)
        if planned_version is not None:
            paths = set(rows.sources.column("source_path").to_pylist())
            r2, s2 = _retire_concurrent(store, run_id, paths, planned_version)
            retired, superseded = retired + r2, superseded + s2
        runs = _runs_row(
            run_id, result.dataset, started, COMMITTED, rows,
            num_duplicates=sum(1 for s in rows.errors.column("stage").to_pylist() if s == DUPLICATE),
            num_conflicts=len(result.conflicts),
        )  # fmt: skip
        version = store.append("runs", runs, run_id=run_id)
    except CatalogError:
        raise
    except Exception as exc:
        raise CatalogError(
            f"commit of run {run_id} to {out} failed (nothing of it is visible): {type(exc).__name__}: {exc}"
        ) from exc
    return CommitResult(
        run_id=run_id, version=version, num_packs=rows.packs.num_rows, num_records=rows.records.num_rows,
        num_errors=rows.num_errors, num_duplicates=len(result.duplicates), num_conflicts=len(result.conflicts),
        num_skipped=sum(rows.sources.column("skipped").to_pylist()), num_sources=rows.sources.num_rows,
        retired_records=retired, superseded_sources=superseded,
    )  # fmt: skip


def record_failed_run(
    out: str, run_id: str, dataset: str, *, started_at: datetime, store: CatalogStore | None = None
) -> int:
    """Append a ``runs`` row with ``status = 'failed'`` (audit trail; its rows stay invisible).

    Returns the ``runs`` version. Used by :func:`iac_spark.catalog.build` when a build or
    its commit fails; :func:`iac_spark.catalog.vacuum` may then clean its files at once.
    A run already recorded (committed or failed) is left alone.
    """
    store = store or DeltaRsStore(out)
    store.ensure()
    snap = Snapshot.load(store)
    if run_id in set(snap.all_runs.column("run_id").to_pylist()):
        return snap.version
    return store.append("runs", _runs_row(run_id, dataset, started_at, FAILED, None), run_id=run_id)
