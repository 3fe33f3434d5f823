"""Commit one build to the catalog: one consistent change, made visible by a single ``runs`` row.

Order of the Delta commits for run ``R`` (each retried on conflicts, see :mod:`.store`):

1. remove leftovers of an earlier, interrupted commit of the same ``R`` (rows of a run
   that never committed are invisible, so this is safe and makes commits retryable);
2. append ``sources`` (first: racing builds find ``R`` by them), ``records``, ``documents``,
   ``errors`` rows of ``R``;
3. retire the rows of re-ingested (changed) sources: ``records.retired = true,
   retired_by_run = R`` and ``sources.superseded = true, superseded_by_run = R`` for the
   committed, not yet (effectively) retired rows of those paths;
4. append the ``packs`` rows;
5. with ``planned_version``: resolve the sources other runs ingest concurrently (below);
6. append the ``runs`` row with ``status = 'committed'``: **the commit point**. Readers
   filter every table to committed runs and resolve retirement flags against them
   (:mod:`.snapshot`), so until this row lands nothing of ``R`` is visible, and a crash
   anywhere before it leaves the catalog exactly as it was (the published pack files and
   the invisible rows become garbage for :func:`iac_spark.catalog.vacuum`).

Concurrent commits (threads or processes, into the same OUT) are safe: appends are
blind, updates that lose a race are retried on the fresh table state, and no step ever
removes a committed row. Two builds that ingest *the same* source concurrently both pack
it; with ``planned_version`` (the catalog version their plan saw, passed by
:func:`iac_spark.catalog.build`) exactly one copy stays live at every catalog version: the
copy of the run with the larger run id (the newer build), decided by a fixed rule each of
the two applies after its own appends and before its commit point (``_resolve_concurrent``):
at least one of them sees the other's rows, and the loser's rows are flagged as retired by
the winner, a flag that counts only once the winner commits. Three or more builds racing on
one source with one of them lost are repaired right after the commit (``_repair_live``).

Example:
    >>> commit_build("/tmp/out", result, files, retire_paths=plan.retire_paths)  # doctest: +SKIP
    CommitResult(run_id='20261122T210000Z-3f2a9c1d', version=3, num_packs=2, ...)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import CatalogError, location
from ..inputs.survey import Source
from ..packing.build import BuildResult, read_run_marker
from .rows import CatalogRows, catalog_rows
from .schema import TableName, to_table
from .snapshot import Snapshot
from .spark_delta import catalog_store
from .store import CatalogStore, DeltaRsStore, sql_list, sql_str
from .views import COMMITTED, FAILED, RETIRE_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["CommitResult", "commit_build", "record_failed_run", "retire_sources"]

#: Tables whose rows carry a source path and are retired when their source is re-ingested.
_RETIRED_BY_SOURCE: tuple[TableName, ...] = ("records", "documents", "sources")


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
    """Where the catalog keeps the items this build found duplicated (for the error text)."""
    dups = result.duplicates
    uids = sorted({d for d, k in zip(dups.column("identity").to_pylist(),
                                     dups.column("kept_path").to_pylist(), strict=True)
                   if k is None})  # fmt: skip
    if not uids or result.plan_kind.identity != "sop_instance_uid":
        return {}
    recs = snap.table(
        "records",
        columns=["sop_instance_uid", "raw_crc32", "pack_id", "row", "source_path", "source_member"],
        where=f"NOT retired AND sop_instance_uid IN {sql_list(uids)}",
    )
    out: dict[tuple[str, int], str] = {}
    for r in recs.to_pylist():
        if r["raw_crc32"] is None:
            continue
        src = location(r["source_path"], r["source_member"])
        out.setdefault(
            (r["sop_instance_uid"], r["raw_crc32"]),
            f"pack {r['pack_id']} row {r['row']} (from {src})",
        )
    return out


def retire_sources(
    store: CatalogStore,
    run_id: str,
    paths: Iterable[str],
    snap: Snapshot,
    *,
    only_runs: frozenset[str] | None = None,
    dataset: str | None = None,
) -> dict[TableName, int]:
    """Flag the live rows of ``paths`` (records, documents, sources) as retired by ``run_id``.

    A row is live unless its flag was set by a committed run (a flag set by a run that never
    committed does not count and is overwritten). ``only_runs`` restricts it to rows of those
    runs, ``dataset`` to rows of that dataset's runs (the same folder may feed several
    datasets). Rows already retired by a committed run keep their original ``*_by_run`` (time
    travel stays exact). Returns the rows flagged per table.
    """
    paths = sorted(set(paths))
    if not paths or (only_runs is not None and not only_runs):
        return {}
    if dataset is not None:
        # the runs that ingested these paths into this dataset: a handful, whatever the history
        mine = (
            snap.sql(
                f"SELECT DISTINCT s.run_id FROM sources s JOIN runs r ON s.run_id = r.run_id "
                f"WHERE r.dataset = {sql_str(dataset)} AND s.source_path IN {sql_list(paths)}"
            )
            .column("run_id")
            .to_pylist()
        )
        only_runs = frozenset(mine) if only_runs is None else only_runs & frozenset(mine)
    if not paths or (only_runs is not None and not only_runs):
        return {}
    counts: dict[TableName, int] = {}
    for name in _RETIRED_BY_SOURCE:
        flag, by = RETIRE_COLUMNS[name]
        where = f"source_path IN {sql_list(paths)} AND run_id <> {sql_str(run_id)}"
        if only_runs is not None:
            where += f" AND run_id IN {sql_list(only_runs)}"
        # flags set by runs that never committed: few (failed or crashed builds), unlike the
        # committed runs, so the predicate does not grow with every scheduled build
        flagged = (
            snap.session.execute(
                f"SELECT DISTINCT {by} AS b FROM {snap.session.dialect.ref(name)} "
                f"WHERE {where} AND {by} IS NOT NULL"
            )
            .column("b")
            .to_pylist()
        )
        ineffective = sorted({b for b in flagged if b is not None} - snap.committed)
        live = f"{flag} IS NULL OR {flag} = false OR {by} IS NULL"
        if ineffective:
            live += f" OR {by} IN {sql_list(ineffective)}"
        counts[name] = store.update(
            name, predicate=f"{where} AND ({live})", updates={flag: "true", by: sql_str(run_id)}
        )
    return counts


def _flag(
    store: CatalogStore, snap: Snapshot, *, runs: Iterable[str], paths: Iterable[str], by: str
) -> dict[TableName, int]:
    """Flag the rows of ``runs`` on ``paths`` (records, documents, sources) as retired by
    ``by``, unless a committed run already retired them. Returns the rows flagged per table."""
    runs, paths = sorted(set(runs)), sorted(set(paths))
    if not runs or not paths:
        return {}
    counts: dict[TableName, int] = {}
    for name in _RETIRED_BY_SOURCE:
        flag, col = RETIRE_COLUMNS[name]
        where = f"source_path IN {sql_list(paths)} AND run_id IN {sql_list(runs)}"
        effective = (
            f"COALESCE({flag} AND {col} IN {sql_list(snap.committed)}, false)"
            if snap.committed
            else "false"
        )
        n = store.update(
            name,
            predicate=f"{where} AND NOT {effective}",
            updates={flag: "true", col: sql_str(by)},
        )
        if n:
            counts[name] = n
    return counts


def _dataset_of(out: str, snap: Snapshot, run: str) -> str | None:
    """The dataset of a run: its ``runs`` row, or for a run still committing, the marker its
    build keeps in staging (None: a run that finished without committing, or that died)."""
    rows = snap.all_runs.filter(pc.equal(snap.all_runs.column("run_id"), run))
    if rows.num_rows:
        return rows.column("dataset")[0].as_py() if run in snap.committed else None
    marker = read_run_marker(out, run)
    dataset = marker.get("dataset") if marker else None
    return dataset if isinstance(dataset, str) else None


def _resolve_concurrent(
    out: str, store: CatalogStore, run_id: str, paths: set[str], planned_version: int,
    dataset: str,
) -> tuple[dict[TableName, int], bool]:  # fmt: skip
    """Decide, before the commit point, which copy of a source ingested concurrently stays live.

    Returns the rows flagged per table and whether any concurrent run was seen.

    *Concurrent* runs are those with ``sources`` rows for ``paths`` (raw: committed or not)
    that were not committed when this build planned (``planned_version``), did not fail, and
    ingest into ``dataset``. Of two such runs the one with the larger run id wins (run ids
    sort by start time, so the newer copy stays), whichever commits first: for each concurrent
    run ``X`` this commit flags the loser's rows on the shared paths as retired by the winner
    — ``X``'s rows by this run, or its own rows by ``X``. A flag counts only once its run
    commits (:mod:`.views`), so:

    * every run appends its ``sources`` rows before it looks, so of two racing runs at least
      one sees the other, and both apply the same rule;
    * the loser's rows are flagged before the later of the two commit points: at no catalog
      version are both copies live, nor neither (a winner that never commits leaves the
      loser's rows live: its flag never becomes effective).
    """
    now = Snapshot.load(store)  # after this run's own appends: sees every racer that appended
    ref = now.session.dialect.ref
    seen = now.session.execute(
        f"SELECT DISTINCT run_id, source_path FROM {ref('sources')} "
        f"WHERE source_path IN {sql_list(paths)} AND run_id <> {sql_str(run_id)}"
    ).to_pylist()
    if not seen:
        return {}, False
    before = (
        Snapshot.load(store, planned_version).committed if planned_version >= 0 else frozenset()
    )
    shared: dict[str, set[str]] = {}
    for r in seen:
        if r["run_id"] is not None and r["run_id"] not in before:
            shared.setdefault(r["run_id"], set()).add(r["source_path"])
    counts: dict[TableName, int] = {}
    racers = False
    for other, other_paths in sorted(shared.items()):
        if _dataset_of(out, now, other) != dataset:
            continue
        racers = True
        if other < run_id:  # this run wins: the other's rows go
            flagged = _flag(store, now, runs=[other], paths=other_paths, by=run_id)
            for name, n in flagged.items():
                counts[name] = counts.get(name, 0) + n
        else:  # the other run wins: this run's rows go, once (if) it commits
            _flag(store, now, runs=[run_id], paths=other_paths, by=other)
    return counts, racers


def _repair_live(store: CatalogStore, paths: set[str], dataset: str) -> None:
    """After a commit: where a source of ``paths`` still has live rows from several runs of
    ``dataset`` (three or more racing builds, one of them lost: a single retirement flag
    cannot wait for two winners), keep the largest run id and retire the rest by it."""
    snap = Snapshot.load(store)
    live = snap.sql(
        f"SELECT DISTINCT source_path, run_id FROM sources WHERE NOT superseded "
        f"AND source_path IN {sql_list(paths)} "
        f"AND run_id IN (SELECT run_id FROM runs WHERE dataset = {sql_str(dataset)})"
    ).to_pylist()
    by_path: dict[str, set[str]] = {}
    for r in live:
        by_path.setdefault(r["source_path"], set()).add(r["run_id"])
    for path, runs in sorted(by_path.items()):
        if len(runs) > 1:
            winner = max(runs)
            _flag(store, snap, runs=runs - {winner}, paths=[path], by=winner)


def _rebuilt(result: BuildResult) -> tuple[list[str], list[str]]:
    """(patients whose earlier record this build replaces, the packs holding those records)."""
    carry = result.carry
    if carry is None or not carry.num_rows or not result.packs:
        return [], []
    packed = set()
    for p in result.packs:
        packed.update(p.index.column("patient_id").to_pylist())
    rows = [(pid, pack) for pid, pack in zip(
        carry.column("patient_id").to_pylist(), carry.column("pack_id").to_pylist(), strict=True
    ) if pid in packed]  # fmt: skip
    return sorted({r[0] for r in rows}), sorted({r[1] for r in rows})


def _carried_documents(snap: Snapshot, result: BuildResult) -> pa.Table | None:
    """The earlier ``documents`` rows that rebuilt patients keep (they move to the new record)."""
    patients, packs = _rebuilt(result)
    if not patients:
        return None
    old = snap.table(
        "documents",
        where=f"NOT retired AND pack_id IN {sql_list(packs)} AND patient_id IN {sql_list(patients)}",
    )
    assert result.carry is not None
    keep = {
        (pid, d)
        for pid, docs in zip(
            result.carry.column("patient_id").to_pylist(),
            result.carry.column("keep").to_pylist(),
            strict=True,
        )
        for d in docs or ()
    }
    fresh: set[tuple[str, str]] = set()
    for path in result.task_files:
        t = pa.ipc.open_file(pa.memory_map(path)).read_all()
        fresh.update(
            zip(t.column("patient_id").to_pylist(), t.column("doc_id").to_pylist(), strict=True)
        )
    mask = [
        (pid, d) in keep and (pid, d) not in fresh
        for pid, d in zip(
            old.column("patient_id").to_pylist(), old.column("doc_id").to_pylist(), strict=True
        )
    ]
    return old.filter(pa.array(mask, pa.bool_()))


def _retire_rebuilt(store: CatalogStore, run_id: str, result: BuildResult) -> dict[TableName, int]:
    """Retire the earlier record (and documents) of every patient this build rebuilt."""
    patients, packs = _rebuilt(result)
    if not patients:
        return {}
    counts: dict[TableName, int] = {}
    for name in ("records", "documents"):
        flag, by = RETIRE_COLUMNS[name]
        predicate = (
            f"pack_id IN {sql_list(packs)} AND patient_id IN {sql_list(patients)} "
            f"AND run_id <> {sql_str(run_id)}"
        )
        counts[name] = store.update(
            name, predicate=predicate, updates={flag: "true", by: sql_str(run_id)}
        )
    return counts


def _leftovers(snap: Snapshot, run_id: str, names: tuple[TableName, ...]) -> list[TableName]:
    """The tables holding rows of ``run_id`` (an earlier, interrupted commit of the same run):
    one query for all of them, so a first commit pays no DELETE."""
    ref = snap.session.dialect.ref
    union = " UNION ALL ".join(
        f"SELECT '{n}' AS t FROM {ref(n)} WHERE run_id = {sql_str(run_id)}" for n in names
    )
    found = set(snap.session.execute(f"SELECT DISTINCT t FROM ({union}) u").column("t").to_pylist())
    return [n for n in names if n in found]


def _runs_row(
    run_id: str, dataset: str, started_at: datetime, status: str, rows: CatalogRows | None,
    num_conflicts: int = 0,
) -> pa.Table:  # fmt: skip
    return to_table("runs", [{
        "run_id": run_id, "dataset": dataset, "started_at": started_at,
        "committed_at": datetime.now(timezone.utc),
        "num_packs": rows.packs.num_rows if rows else 0, "num_records": rows.num_records if rows else 0,
        "num_errors": rows.num_errors if rows else 0,
        "num_duplicates": rows.num_duplicates if rows else 0,
        "num_conflicts": num_conflicts, "status": status,
    }])  # fmt: skip


def commit_build(
    out: str,
    result: BuildResult,
    sources: Sequence[Source],
    *,
    retire_paths: Iterable[str] = (),
    started_at: datetime | None = None,
    store: CatalogStore | None = None,
    engine: Literal["delta-rs", "spark"] = "delta-rs",
    spark: SparkSession | None = None,
    catalog_name: str | None = None,
    planned_version: int | None = None,
) -> CommitResult:
    """Write ``result`` into the catalog under ``OUT/_catalog`` as one consistent change.

    ``sources`` are the inputs the build scanned (one ``sources`` row each, fingerprinted by
    their survey); ``retire_paths`` the re-ingested sources whose older rows are retired. The
    engine is delta-rs on ``OUT/_catalog`` unless ``engine="spark"`` or ``catalog_name`` (Unity
    Catalog ``catalog.schema.prefix`` → ``<prefix>_<table>``) asks for Spark Delta on ``spark``
    (see :func:`~iac_spark.catalog.spark_delta.catalog_store`), or an explicit ``store`` is
    given. ``planned_version`` is the ``runs`` version the build's plan was made against (-1:
    there was no catalog); when given, rows of this build's sources committed by other runs
    since then are retired too (concurrent ingestion of one source). The build's scan files
    must still be in staging (``keep_staging=True``): records take their attributes from them.
    Raises :class:`CatalogError` if the run is already committed or the catalog cannot be
    written; nothing of the run is visible unless this returns.
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
            result, sources, known_locations=_known_locations(snap, result),
            carried=_carried_documents(snap, result),
        )  # fmt: skip
        leftovers: tuple[TableName, ...] = ("records", "documents", "sources", "errors", "packs")
        for name in _leftovers(snap, run_id, leftovers):  # of an interrupted commit (invisible)
            store.delete(name, predicate=f"run_id = {sql_str(run_id)}")
        if rows.sources.num_rows:  # first: a racing build finds this run by its sources rows
            store.append("sources", rows.sources, run_id=run_id)
        if rows.num_records:
            store.append("records", rows.records, run_id=run_id)
        for name, table in (("documents", rows.documents), ("errors", rows.errors)):
            if table.num_rows:
                store.append(name, table, run_id=run_id)
        retire = {os.path.abspath(p) for p in retire_paths}
        counts = retire_sources(store, run_id, retire, Snapshot.load(store), dataset=result.dataset)
        for name, n in _retire_rebuilt(store, run_id, result).items():
            counts[name] = counts.get(name, 0) + n
        if rows.packs.num_rows:
            store.append("packs", rows.packs, run_id=run_id)
        paths = set(rows.sources.column("source_path").to_pylist())
        racers = False
        if planned_version is not None and paths:
            flagged, racers = _resolve_concurrent(
                out, store, run_id, paths, planned_version, result.dataset
            )
            for name, n in flagged.items():
                counts[name] = counts.get(name, 0) + n
        runs = _runs_row(
            run_id, result.dataset, started, COMMITTED, rows, num_conflicts=result.num_conflicting
        )
        version = store.append("runs", runs, run_id=run_id)
    except CatalogError:
        raise
    except Exception as exc:
        raise CatalogError(
            f"commit of run {run_id} to {out} failed (nothing of it is visible): {type(exc).__name__}: {exc}"
        ) from exc
    if racers:
        # only when another build raced this one (three or more racers can leave two copies);
        # committed: a failure here must not report the commit as failed; the next build of
        # these sources repairs again
        with contextlib.suppress(Exception):
            _repair_live(store, paths, result.dataset)
    return CommitResult(
        run_id=run_id, version=version, num_packs=rows.packs.num_rows, num_records=rows.num_records,
        num_errors=rows.num_errors, num_duplicates=rows.num_duplicates,
        num_conflicts=result.num_conflicting,
        num_skipped=sum(rows.sources.column("skipped").to_pylist()), num_sources=rows.sources.num_rows,
        retired_records=counts.get("records", 0), superseded_sources=counts.get("sources", 0),
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
