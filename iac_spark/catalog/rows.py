"""A :class:`~iac_spark.packing.build.BuildResult` → the rows of one catalog commit.

No Delta here: this module turns what a build published and rejected into Arrow tables with
the catalog schema, so the accounting is testable on its own.

* ``records``: one row per packed record: the pack's index row, plus (for DICOM) the promoted
  attributes and ``meta`` read back from the build's scan files, joined on (path, member). The
  rows are produced per scan file as a stream of batches, so the driver never holds every
  record's ``meta`` at once.
* ``sources``: one row per ingested source with the counts the build tallied from the scan:
  ``members = packed + duplicates + errors + skipped``, exact, nested zips included.
* ``errors``: scan / pack / unpaired issues, plus one ``duplicate`` row per duplicate and one
  ``conflict`` row per conflicting copy (conflicting copies are packed *and* reported, so a
  conflict row is not counted as an error of its source).

Example:
    >>> pack_relpath("/o", "/o/packs/ds/r-0000.iac"), pack_abspath("/o", "packs/ds/r-0000.iac")
    ('packs/ds/r-0000.iac', '/o/packs/ds/r-0000.iac')
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from iatro.iac import PackReader

from ..errors import CatalogError, location
from ..inputs.survey import Source
from ..packing.build import BuildResult, SourceTally
from ..packing.merge import PackInfo
from .schema import ATTRIBUTE_COLUMNS, DOCUMENTS_SCHEMA, RECORDS_SCHEMA, to_table

__all__ = [
    "CONFLICT",
    "DUPLICATE",
    "FAILED_SOURCE",
    "INGESTED",
    "CatalogRows",
    "catalog_rows",
    "documents_rows",
    "pack_abspath",
    "pack_relpath",
]

DUPLICATE = "duplicate"
CONFLICT = "conflict"
INGESTED = "ingested"
FAILED_SOURCE = "failed"

_NO_MEMBER = "\0"  # join key for bare files (member null); never a real member name


@dataclass(frozen=True)
class CatalogRows:
    """Everything one build adds to the catalog except its ``runs`` row (written last, by commit)."""

    run_id: str
    records: Callable[[], pa.RecordBatchReader]  # streamed; callable again on a retry
    num_records: int
    sources: pa.Table
    errors: pa.Table
    packs: pa.Table
    documents: pa.Table = field(default_factory=DOCUMENTS_SCHEMA.empty_table)

    @property
    def num_errors(self) -> int:
        """Scan, pack and unpaired errors (not duplicates, not conflicts)."""
        stages = self.errors.column("stage").to_pylist()
        return sum(1 for s in stages if s not in (DUPLICATE, CONFLICT))

    @property
    def num_duplicates(self) -> int:
        return sum(1 for s in self.errors.column("stage").to_pylist() if s == DUPLICATE)


def pack_relpath(out: str, path: str) -> str:
    """A pack's path relative to OUT with ``/`` separators (absolute if it is outside OUT)."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(out))
    if rel.startswith(".."):
        return os.path.abspath(path)
    return rel.replace(os.sep, "/")


def pack_abspath(out: str, path: str) -> str:
    """Absolute path of a ``packs.path`` value (relative to OUT, or already absolute)."""
    return path if os.path.isabs(path) else os.path.join(os.path.abspath(out), *path.split("/"))


def _index_rows(packs: Sequence[PackInfo]) -> pa.Table:
    """Every pack's index with ``pack_id`` and ``row``, in the records schema's types."""
    keep = [f.name for f in RECORDS_SCHEMA]
    tables = []
    for p in packs:
        idx = p.index
        n = idx.num_rows
        cols: dict[str, pa.Array | pa.ChunkedArray] = {
            "pack_id": pa.array([p.pack_id] * n, pa.string()),
            "row": pa.array(range(n), pa.int64()),
        }
        for name in idx.column_names:
            if name in keep:
                cols[name] = idx.column(name).cast(RECORDS_SCHEMA.field(name).type)
        tables.append(pa.table(cols))
    return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})


def _conform_records(t: pa.Table, run_id: str) -> pa.Table:
    n = t.num_rows
    fixed = {
        "run_id": pa.array([run_id] * n, pa.string()),
        "retired": pa.array([False] * n, pa.bool_()),
        "retired_by_run": pa.nulls(n, pa.string()),
    }
    arrays = []
    for f in RECORDS_SCHEMA:
        if f.name in fixed:
            arrays.append(fixed[f.name])
        elif f.name in t.column_names:
            arrays.append(t.column(f.name).cast(f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=RECORDS_SCHEMA)


#: Scan rows joined at a time: bounds the driver's memory in the commit (a row's ``meta`` can
#: be tens of KB) while keeping the joins against the index few.
SCAN_SLICE_ROWS = 4096


def _scan_slices(path: str) -> Iterator[pa.Table]:
    """One scan file, memory-mapped, in slices of :data:`SCAN_SLICE_ROWS` rows (no copies)."""
    reader = pa.ipc.open_file(pa.memory_map(path))
    for i in range(reader.num_record_batches):
        batch = reader.get_batch(i)
        for start in range(0, batch.num_rows, SCAN_SLICE_ROWS):
            yield pa.Table.from_batches([batch.slice(start, SCAN_SLICE_ROWS)])


def _attributes_of(part: pa.Table, rows: pa.Array) -> dict[str, Any]:
    """Raw CRC-32 and whatever attributes the scan rows ``rows`` of ``part`` carry."""
    cols = {"raw_crc32": part.column("crc32").take(rows)}
    for name in ATTRIBUTE_COLUMNS:
        if name in part.column_names:
            cols[name] = part.column(name).take(rows)
    return cols


def records_stream(result: BuildResult) -> tuple[Callable[[], pa.RecordBatchReader], int]:
    """A re-callable reader of the ``records`` rows of ``result``, and how many rows it yields.

    DICOM records get their attributes from the build's scan files (still in staging);
    other layouts have no per-member attributes and carry the index columns only.
    """
    index = _index_rows(result.packs)
    total = index.num_rows
    run_id = result.run_id

    def batches() -> Iterator[pa.RecordBatch]:
        if total == 0:
            return
        if "source_path" not in index.column_names or not result.scan_files:
            yield from _conform_records(index, run_id).to_batches()
            return
        keyed = index.append_column(
            "_member", pc.fill_null(index.column("source_member"), _NO_MEMBER)
        )
        matched = 0
        for part in (p for path in result.scan_files for p in _scan_slices(path)):
            # join on the keys of the ok rows only (Acero joins carry no list columns), then
            # take the attributes of the matched rows: one copy, of one slice
            keys = pa.table({
                "source_path": part.column("path"),
                "_member": pc.fill_null(part.column("member"), _NO_MEMBER),
                "_arow": pa.array(range(part.num_rows), pa.int64()),
            }).filter(pc.equal(part.column("status"), "ok"))  # fmt: skip
            joined = keyed.join(keys, keys=["source_path", "_member"], join_type="inner")
            if joined.num_rows == 0:
                continue
            joined = joined.sort_by([("pack_id", "ascending"), ("row", "ascending")])
            for name, column in _attributes_of(part, joined.column("_arow")).items():
                joined = joined.append_column(name, column)
            matched += joined.num_rows
            yield from _conform_records(joined, run_id).to_batches(max_chunksize=4096)
        if matched != total:
            raise CatalogError(
                f"run {run_id}: {total - matched} of {total} packed records have no scan row "
                "to take their attributes from"
            )

    return (lambda: pa.RecordBatchReader.from_batches(RECORDS_SCHEMA, batches())), total


def _record_locations(packs: Sequence[PackInfo]) -> pa.Table:
    """patient_id → (pack_id, row) of every record (text packs: one record per patient)."""
    tables = [
        pa.table(
            {
                "patient_id": p.index.column("patient_id").cast(pa.string()),
                "pack_id": pa.array([p.pack_id] * p.index.num_rows, pa.string()),
                "row": pa.array(range(p.index.num_rows), pa.int64()),
            }
        )
        for p in packs
    ]
    return pa.concat_tables(tables) if tables else pa.table(
        {"patient_id": pa.array([], pa.string()), "pack_id": pa.array([], pa.string()),
         "row": pa.array([], pa.int64())}
    )  # fmt: skip


def documents_rows(result: BuildResult, carried: pa.Table | None = None) -> pa.Table:
    """The ``documents`` rows of a text build: every packed note, and the ``carried`` ones.

    New notes come from the build's task files (exactly the rows that were packed); a carried
    note is an earlier ``documents`` row of a rebuilt patient, moved to its new record.
    """
    if result.plan_kind.identity != "doc_id":
        return DOCUMENTS_SCHEMA.empty_table()
    where = _record_locations(result.packs)
    parts = []
    for path in result.task_files:
        t = pa.ipc.open_file(pa.memory_map(path)).read_all()
        parts.append(
            pa.table(
                {
                    "patient_id": t.column("patient_id"),
                    "institution": t.column("institution"),
                    "doc_id": t.column("doc_id"),
                    "doc_type": t.column("doc_type"),
                    "encounter": t.column("encounter"),
                    "doc_timestamp": t.column("doc_timestamp"),
                    "n_chars": t.column("n_chars"),
                    "encoding": t.column("encoding"),
                    "source_path": t.column("path"),
                    "source_member": t.column("member"),
                    "raw_crc32": t.column("crc32"),
                }
            )
        )
    if carried is not None and carried.num_rows:
        parts.append(
            carried.drop_columns([c for c in ("pack_id", "row") if c in carried.column_names])
        )
    if not parts:
        return DOCUMENTS_SCHEMA.empty_table()
    docs = pa.concat_tables(parts, promote_options="permissive")
    docs = docs.join(where, "patient_id", join_type="inner")
    n = docs.num_rows
    fixed = {
        "run_id": pa.array([result.run_id] * n, pa.string()),
        "retired": pa.array([False] * n, pa.bool_()),
        "retired_by_run": pa.nulls(n, pa.string()),
    }
    table = pa.table(
        [
            fixed[f.name] if f.name in fixed else docs.column(f.name).cast(f.type)
            for f in DOCUMENTS_SCHEMA
        ],
        schema=DOCUMENTS_SCHEMA,
    )
    return table.sort_by([("pack_id", "ascending"), ("row", "ascending"),
                          ("doc_timestamp", "ascending"), ("doc_id", "ascending")])  # fmt: skip


def _pack_row(pack: PackInfo, out: str, run_id: str, now: datetime) -> dict[str, Any]:
    reader = PackReader(pack.path)
    try:
        header = dict(reader.header)
    finally:
        reader.close()
    return {
        "pack_id": pack.pack_id, "dataset": pack.dataset, "path": pack_relpath(out, pack.path),
        "payload_type": header.get("payload_type"), "codec": header.get("codec"),
        "num_records": pack.num_records, "num_patients": pack.num_patients, "num_series": pack.num_series,
        "data_bytes": pack.data_bytes, "file_bytes": pack.file_bytes,
        "file_crc32c": pack.file_crc32c, "run_id": run_id, "created_at": now,
    }  # fmt: skip


def _duplicate_rows(
    result: BuildResult, known_locations: Mapping[tuple[str, int], str]
) -> list[dict[str, Any]]:
    label, item = result.plan_kind.identity_label, result.plan_kind.item
    out = []
    for d in result.duplicates.to_pylist():
        if d["kept_path"] is not None:
            kept = location(d["kept_path"], d["kept_member"]) + " (packed by this run)"
        else:
            kept = known_locations.get(
                (d["identity"], d["crc32"]), "a record already in the catalog"
            )
        text = (
            f"Duplicate{item}: {location(d['source_path'], d['source_member'])} has the same {label} "
            f"{d['identity']} and bytes as {kept}"
        )
        out.append((d["source_path"], d["source_member"], DUPLICATE, text))
    return [
        dict(zip(("source_path", "source_member", "stage", "error"), r, strict=True)) for r in out
    ]


def _conflict_rows(result: BuildResult) -> list[dict[str, Any]]:
    label, item = result.plan_kind.identity_label, result.plan_kind.item
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in result.conflicts.to_pylist():
        groups.setdefault(c["identity"], []).append(c)
    out = []
    for ident, copies in sorted(groups.items()):
        for i, c in enumerate(copies):
            if c["source_path"] is None:
                continue
            others = [
                "a record already in the catalog"
                if o["source_path"] is None
                else f"{location(o['source_path'], o['source_member'])} (crc32 {o['crc32']:08x})"
                for j, o in enumerate(copies)
                if j != i
            ]
            outcome = (
                "only the first copy is paired"
                if result.layout == "clinical_text_pair"
                else "all copies are packed"
            )
            text = (
                f"Conflicting{item}: {label} {ident} at {location(c['source_path'], c['source_member'])} "
                f"(crc32 {c['crc32']:08x}) has different bytes than {', '.join(others)}; {outcome}"
            )
            out.append(
                {"source_path": c["source_path"], "source_member": c["source_member"],
                 "stage": CONFLICT, "error": text}
            )  # fmt: skip
    return out


def _source_row(src: Source, t: SourceTally, run_id: str) -> dict[str, Any]:
    failed = t.errors > 0 and t.packed + t.duplicates == 0
    return {
        "source_path": src.path, "size": src.file.size,
        "mtime": datetime.fromtimestamp(src.file.mtime, timezone.utc),
        "fingerprint": src.fingerprint, "run_id": run_id,
        "status": FAILED_SOURCE if failed else INGESTED, "members": t.members,
        "packed": t.packed, "duplicates": t.duplicates, "errors": t.errors, "skipped": t.skipped,
        "superseded": False, "superseded_by_run": None,
    }  # fmt: skip


def catalog_rows(
    result: BuildResult,
    sources: Sequence[Source],
    *,
    known_locations: Mapping[tuple[str, int], str] | None = None,
    carried: pa.Table | None = None,
    now: datetime | None = None,
) -> CatalogRows:
    """Rows of ``records``, ``sources``, ``errors`` and ``packs`` for one build.

    ``sources`` are the inputs the build scanned (one ``sources`` row each, with the fingerprint
    from the build's survey). ``known_locations`` maps (identity, raw CRC-32) of catalog records
    to a description, used to name the kept copy of a duplicate catalogued by an earlier run.
    ``carried`` are the earlier ``documents`` rows of rebuilt patients (text builds).
    """
    now = now or datetime.now(timezone.utc)
    run_id = result.run_id
    missing = sorted(set(result.sources) - {s.path for s in sources})
    if missing:
        raise CatalogError(f"run {run_id}: scanned paths that are not build sources: {missing[:3]}")
    issues = [{**r, "run_id": run_id, "at": now} for r in result.issues.to_pylist()]
    extra = _duplicate_rows(result, known_locations or {})
    extra += _conflict_rows(result)
    errors = issues + [{**r, "run_id": run_id, "at": now} for r in extra]
    source_rows = [
        _source_row(s, result.sources.get(s.path, SourceTally()), run_id) for s in sources
    ]
    records, n = records_stream(result)
    return CatalogRows(
        run_id=run_id, records=records, num_records=n, sources=to_table("sources", source_rows),
        errors=to_table("errors", errors),
        packs=to_table("packs", [_pack_row(p, result.out, run_id, now) for p in result.packs]),
        documents=documents_rows(result, carried),
    )  # fmt: skip
