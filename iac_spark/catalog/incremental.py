"""Decide what a build must (re)ingest, and which instances the catalog already holds.

* :func:`plan_sources` compares each source's fingerprint (from its survey, see
  :func:`iac_spark.inputs.survey.survey`)
  with the live (committed, not superseded) ``sources`` rows of its path: no row →
  *new*; a row with the same fingerprint → *unchanged* (skipped: reruns are
  idempotent); rows with other fingerprints only → *changed* (re-ingested; its old
  rows are retired when the new build commits).
* :func:`known_items` gives (identity, raw CRC-32) of the live records (or documents), minus
  those of sources being re-ingested, for the build plan: an item already catalogued from
  another source becomes a ``duplicate`` error row instead of being packed twice.

Files that disappeared from the inputs are not retired (a build only sees what it is
given); a source whose every member failed has ``status = 'failed'`` and is retried
only with ``retry_failed=True`` or once the file changes.

Example:
    >>> import tempfile, zipfile, os
    >>> from iac_spark.inputs import discover, survey
    >>> d = tempfile.mkdtemp(); z = os.path.join(d, "a.zip")
    >>> with zipfile.ZipFile(z, "w") as zf:
    ...     zf.writestr("x.dcm", b"x")
    >>> plan = plan_sources(os.path.join(d, "out"), survey(discover([z])))
    >>> len(plan.new), len(plan.changed), len(plan.unchanged)
    (1, 0, 0)
    >>> known_items(os.path.join(d, "out")).num_rows
    0
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from ..inputs.survey import Source
from .rows import INGESTED
from .schema import TableName
from .snapshot import Snapshot
from .store import CatalogStore, DeltaRsStore, sql_list, sql_str

__all__ = ["SourcePlan", "known_items", "plan_sources", "text_carry"]


@dataclass(frozen=True)
class SourcePlan:
    """Sources split by what the catalog knows about them."""

    new: list[Source]
    changed: list[Source]
    unchanged: list[Source]
    catalog_version: int | None = None  # runs version the plan was made against (None: no catalog)

    @property
    def to_ingest(self) -> list[Source]:
        """New then changed sources."""
        return [*self.new, *self.changed]

    @property
    def retire_paths(self) -> list[str]:
        """Paths whose older catalog rows the next commit retires."""
        return [s.path for s in self.changed]


def _store(out: str, store: CatalogStore | None) -> CatalogStore:
    return store or DeltaRsStore(out)


def plan_sources(
    out: str,
    sources: Sequence[Source],
    *,
    dataset: str | None = None,
    retry_failed: bool = False,
    store: CatalogStore | None = None,
) -> SourcePlan:
    """Split ``sources`` into new / changed / unchanged against the committed catalog of ``out``.

    With ``dataset``, only that dataset's runs count: a folder already ingested into one
    dataset is new to another.
    """
    store = _store(out, store)
    if not store.exists():
        return SourcePlan(list(sources), [], [], None)
    snap = Snapshot.load(store)
    where = "NOT superseded"
    if dataset is not None:
        where += f" AND run_id IN (SELECT run_id FROM runs WHERE dataset = {sql_str(dataset)})"
    live = snap.table("sources", columns=["source_path", "fingerprint", "status"], where=where)
    seen: dict[str, list[tuple[str, str]]] = {}
    for r in live.to_pylist():
        seen.setdefault(r["source_path"], []).append((r["fingerprint"], r["status"]))
    new, changed, unchanged = [], [], []
    for s in sources:
        rows = seen.get(s.path)
        if not rows:
            new.append(s)
        elif any(
            fp == s.fingerprint and (status == INGESTED or not retry_failed) for fp, status in rows
        ):
            unchanged.append(s)
        else:
            changed.append(s)
    return SourcePlan(new, changed, unchanged, snap.version)


def known_items(
    out: str,
    *,
    table: TableName = "records",
    identity: str = "sop_instance_uid",
    dataset: str | None = None,
    exclude_paths: Iterable[str] = (),
    store: CatalogStore | None = None,
) -> pa.Table:
    """(identity, raw CRC-32) of the live (committed, not retired) rows of ``table``.

    With ``dataset``, only the rows in that dataset's packs count (each dataset holds its
    own copy of an item).

    Rows whose ``source_path`` is in ``exclude_paths`` (sources being re-ingested) are left
    out, so their items are packed again rather than reported as duplicates. Two Arrow
    columns (a few dozen bytes per catalogued item), never Python objects per row.
    """
    store = _store(out, store)
    empty = pa.table({"identity": pa.array([], pa.string()), "raw_crc32": pa.array([], pa.int64())})
    if not store.exists():
        return empty
    snap = Snapshot.load(store)
    where = f"NOT retired AND {identity} IS NOT NULL AND raw_crc32 IS NOT NULL"
    excluded = sorted({os.path.abspath(p) for p in exclude_paths})
    if excluded:
        where += f" AND (source_path IS NULL OR source_path NOT IN {sql_list(excluded)})"
    if dataset is not None:
        where += f" AND pack_id IN (SELECT pack_id FROM packs WHERE dataset = {sql_str(dataset)})"
    t = snap.table(table, columns=[identity, "raw_crc32"], where=where)
    return pa.table({"identity": t.column(0), "raw_crc32": t.column(1)})


def text_carry(
    out: str,
    *,
    dataset: str,
    layout: str,
    exclude_paths: Iterable[str] = (),
    store: CatalogStore | None = None,
) -> pa.Table | None:
    """The live text records of ``dataset`` in ``layout``, for the build to rebuild them.

    One row per patient (:data:`~iac_spark.packing.text.CARRY_SCHEMA`): where the record is and
    the ``doc_id``\\ s of its live documents that are not from ``exclude_paths`` (sources being
    re-ingested, whose notes come again from the scan). None when there are none.
    """
    from ..packing.text import CARRY_SCHEMA
    from .rows import pack_abspath

    store = _store(out, store)
    if not store.exists():
        return None
    snap = Snapshot.load(store)
    recs = snap.sql(
        "SELECT r.patient_id, r.pack_id, p.path AS pack_path, r.row FROM records r "
        "JOIN packs p ON r.pack_id = p.pack_id "
        f"WHERE NOT r.retired AND p.payload_type = {sql_str(layout)} AND p.dataset = {sql_str(dataset)}"
    )
    if not recs.num_rows:
        return None
    excluded = sorted({os.path.abspath(p) for p in exclude_paths})
    where = (
        f"NOT retired AND source_path NOT IN {sql_list(excluded)}" if excluded else "NOT retired"
    )
    docs = snap.table("documents", columns=["pack_id", "row", "doc_id"], where=where)
    keep: dict[tuple[str, int], list[str]] = {}
    for pack, row, doc in zip(
        docs.column("pack_id").to_pylist(), docs.column("row").to_pylist(),
        docs.column("doc_id").to_pylist(), strict=True,
    ):  # fmt: skip
        keep.setdefault((pack, row), []).append(doc)
    rows = recs.to_pylist()
    return pa.Table.from_pylist(
        [
            {
                "patient_id": r["patient_id"],
                "pack_id": r["pack_id"],
                "pack_path": pack_abspath(store.out, r["pack_path"]),
                "row": r["row"],
                "keep": keep.get((r["pack_id"], r["row"]), []),
            }
            for r in rows
        ],
        schema=CARRY_SCHEMA,
    )
