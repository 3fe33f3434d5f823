"""A catalog query → the records it selects: the query's columns plus where each record lives.

The query runs once, over the committed catalog views at one version (DataFusion SQL, see
:func:`iac_spark.catalog.sql`); the result's row order is the dataset's order. A result with
``pack_id`` and ``row`` names its records directly; one with only ``sop_instance_uid`` is
resolved against the live records (a UID with several live records, i.e. conflicting copies,
is refused: select ``pack_id, row`` to pick one). Each record's pack is looked up in
``packs`` (path and ``payload_type``). The :class:`Selection` is a small picklable value:
Arrow columns and two integer arrays, nothing open.

Example:
    >>> print(default_query())  # doctest: +NORMALIZE_WHITESPACE
    SELECT r.pack_id, r.row, r.sop_instance_uid, r.series_instance_uid, r.study_instance_uid,
    r.patient_id, r.modality, r.instance_number FROM records r JOIN packs p ON r.pack_id = p.pack_id
    WHERE NOT r.retired AND p.payload_type IN ('dicom_p10', 'dicom_patient') ORDER BY r.pack_id, r.row
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from .errors import CohortQueryError, UnsupportedLayoutError
from .layouts import LAYOUTS

if TYPE_CHECKING:
    from ..catalog.api import Catalog

__all__ = ["DEFAULT_COLUMNS", "PAYLOAD_KEYS", "PackRef", "Selection", "default_query", "select"]

#: Columns of the default query (one row per live record of a readable pack).
DEFAULT_COLUMNS: tuple[str, ...] = (
    "pack_id", "row", "sop_instance_uid", "series_instance_uid", "study_instance_uid",
    "patient_id", "modality", "instance_number",
)  # fmt: skip

#: Item keys of the decoded payload; a query may not return columns of these names.
PAYLOAD_KEYS: tuple[str, ...] = ("bytes", "dataset", "pixels")

#: Above this many distinct UIDs a ``sop_instance_uid`` query is resolved against every live
#: record instead of an ``IN`` list.
_IN_LIST_MAX = 1000


def default_query() -> str:
    """Every live record of a pack layout :data:`~iac_spark.data.layouts.LAYOUTS` reads."""
    from ..catalog.store import sql_list

    cols = ", ".join(f"r.{c}" for c in DEFAULT_COLUMNS)
    return (
        f"SELECT {cols} FROM records r JOIN packs p ON r.pack_id = p.pack_id "
        f"WHERE NOT r.retired AND p.payload_type IN {sql_list(sorted(LAYOUTS))} "
        "ORDER BY r.pack_id, r.row"
    )


@dataclass(frozen=True)
class PackRef:
    """A pack the selection reads: its id, absolute path and layout."""

    pack_id: str
    path: str
    payload_type: str


@dataclass(frozen=True)
class Selection:
    """The selected records, in order: the query's columns, and (pack, row) of each."""

    query: str
    version: int  # the catalog (``runs``) version the query ran at
    columns: pa.Table  # the query's result, one chunk
    pack: array  # index into ``packs`` per sample ("l")
    row: array  # record row within its pack per sample ("q")
    packs: tuple[PackRef, ...]

    def __len__(self) -> int:
        return len(self.row)


def select(catalog: Catalog, query: str | None = None) -> Selection:
    """Run ``query`` (default :func:`default_query`) on ``catalog`` and locate its records."""
    sql = query if query is not None else default_query()
    table = catalog.sql(sql).combine_chunks()
    names = table.column_names
    clash = [c for c in names if c in PAYLOAD_KEYS]
    if clash:
        raise CohortQueryError(
            f"the query returns column(s) {clash}, which are the decoded payload's item keys "
            f"{list(PAYLOAD_KEYS)}: rename them (AS ...)"
        )
    if "pack_id" in names and "row" in names:
        pack_ids = table.column("pack_id").to_pylist()
        rows = table.column("row").to_pylist()
        bad = next((i for i, (p, r) in enumerate(zip(pack_ids, rows, strict=True))
                    if p is None or r is None), None)  # fmt: skip
        if bad is not None:
            raise CohortQueryError(f"row {bad} of the query's result has a null pack_id or row")
    elif "sop_instance_uid" in names:
        pack_ids, rows = _by_uid(catalog, table.column("sop_instance_uid").to_pylist())
    else:
        raise CohortQueryError(
            "the query must return pack_id and row, or sop_instance_uid, to say which records "
            f"to read; it returns {names}"
        )
    packs, index = _packs(catalog, pack_ids)
    return Selection(
        query=sql, version=catalog.version, columns=table,
        pack=array("l", index), row=array("q", (int(r) for r in rows)), packs=packs,
    )  # fmt: skip


def _by_uid(catalog: Catalog, uids: list[str | None]) -> tuple[list[str], list[int]]:
    from ..catalog.store import sql_list

    if any(u is None for u in uids):
        raise CohortQueryError("the query's sop_instance_uid column has a null")
    wanted = set(uids)
    where = "NOT retired AND sop_instance_uid IS NOT NULL"
    if 0 < len(wanted) <= _IN_LIST_MAX:
        where += f" AND sop_instance_uid IN {sql_list(wanted)}"  # type: ignore[arg-type]
    found: dict[str, list[tuple[str, int]]] = {}
    if wanted:
        live = catalog.sql(f"SELECT sop_instance_uid, pack_id, row FROM records WHERE {where}")
        for u, p, r in zip(*(live.column(c).to_pylist() for c in live.column_names), strict=True):
            if u in wanted:
                found.setdefault(u, []).append((p, r))
    pack_ids, rows = [], []
    for u in uids:
        hits = found.get(u)  # type: ignore[arg-type]
        if not hits:
            raise CohortQueryError(f"sop_instance_uid {u} has no live record in the catalog")
        if len(hits) > 1:
            raise CohortQueryError(
                f"sop_instance_uid {u} has {len(hits)} live records (conflicting copies: "
                f"{sorted(hits)[:3]}); select pack_id, row to say which one to read"
            )
        pack_ids.append(hits[0][0])
        rows.append(hits[0][1])
    return pack_ids, rows


def _packs(catalog: Catalog, pack_ids: list[str]) -> tuple[tuple[PackRef, ...], list[int]]:
    table = catalog.sql("SELECT pack_id, path, payload_type FROM packs")
    known = {
        p: (path, kind)
        for p, path, kind in zip(*(table.column(c).to_pylist() for c in table.column_names),
                                 strict=True)
    }  # fmt: skip
    refs: list[PackRef] = []
    slot: dict[str, int] = {}
    index = []
    for p in pack_ids:
        i = slot.get(p)
        if i is None:
            if p not in known:
                raise CohortQueryError(f"pack_id {p!r} of the query's result is not in packs")
            path, kind = known[p]
            if kind not in LAYOUTS:
                raise UnsupportedLayoutError(
                    f"pack {p} has payload_type {kind!r}; RecordDataset reads "
                    f"{sorted(LAYOUTS)} packs: select records of those packs only"
                )
            i = slot[p] = len(refs)
            refs.append(PackRef(p, catalog.pack_path(path), kind))
        index.append(i)
    return tuple(refs), index
