"""A :class:`~iac_spark.packing.build.BuildResult` → the rows of one catalog commit.

No Delta here: this module turns what a build published and rejected into Arrow
tables with the catalog schema, so the accounting is testable on its own.

Accounting (DESIGN.md "Bad input"): every member of a source ends in exactly one of
a ``records`` row, an ``errors`` row with stage ``scan`` / ``pack`` / ``duplicate``, or the
source's ``skipped`` count. Conflicting members are packed (they are ``records`` rows)
and *also* get an ``errors`` row with stage ``conflict`` naming the other copies, so
conflicts are reported without being counted twice. Per source,
``members = packed + duplicates + errors + skipped``.

``skipped`` (plainly-not-DICOM members such as ``LICENSE.txt``) is not reported by the
scan, so it is derived from the zip's central directory: the top-level file entries
that are not nested ``.zip`` members, minus the scan rows of that source whose member
is top-level (no ``!``) and not a ``.zip``. *Approximation:* members skipped *inside*
nested zips are not counted (the nested zip's members are only known to the scan); a
nested zip recognised by its magic bytes but not named ``*.zip`` counts as one extra
skipped member. A bare file counts 1 skipped if the scan produced no row for it.

Example:
    >>> skipped_count("zip", [("LICENSE.txt", 1, 9), ("a/1.dcm", 2, 99)], ["a/1.dcm"])
    1
    >>> skipped_count("file", None, [])
    1
"""

from __future__ import annotations

import glob
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
from iatro.iac import PackReader

from ..errors import InputNotFoundError, location
from ..inputs.archives import looks_like_zip_name
from ..inputs.discover import InputFile, discover
from ..packing.build import BuildResult
from ..packing.merge import PackInfo
from .fingerprint import fingerprint, zip_entries
from .schema import RECORDS_SCHEMA, to_table

__all__ = [
    "CONFLICT",
    "DUPLICATE",
    "FAILED_SOURCE",
    "INGESTED",
    "CatalogRows",
    "catalog_rows",
    "pack_abspath",
    "pack_relpath",
    "records_rows",
    "skipped_count",
]

DUPLICATE = "duplicate"
CONFLICT = "conflict"
INGESTED = "ingested"
FAILED_SOURCE = "failed"


@dataclass(frozen=True)
class CatalogRows:
    """Everything one build adds to the catalog except its ``runs`` row (written last, by commit)."""

    run_id: str
    records: pa.Table
    sources: pa.Table
    errors: pa.Table
    packs: pa.Table

    @property
    def num_errors(self) -> int:
        """Scan and pack errors (not duplicates, not conflicts)."""
        return sum(
            1 for s in self.errors.column("stage").to_pylist() if s not in (DUPLICATE, CONFLICT)
        )


def skipped_count(
    kind: str, entries: Sequence[tuple[str, int, int]] | None, scan_members: Iterable[str | None]
) -> int:
    """Skipped-not-DICOM members of one source (see the module docstring for the approximation)."""
    members = list(scan_members)
    if kind != "zip":
        return 0 if members else 1
    if entries is None:
        return 0
    top = sum(1 for name, _crc, _size in entries if not looks_like_zip_name(name))
    scanned_top = sum(
        1 for m in members if m is not None and "!" not in m and not looks_like_zip_name(m)
    )
    return max(0, top - scanned_top)


def pack_relpath(out: str, path: str) -> str:
    """A pack's path relative to OUT with ``/`` separators (absolute if it is outside OUT).

    >>> pack_relpath("/o", "/o/packs/ds/r-0000.iac")
    'packs/ds/r-0000.iac'
    """
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(out))
    if rel.startswith(".."):
        return os.path.abspath(path)
    return rel.replace(os.sep, "/")


def pack_abspath(out: str, path: str) -> str:
    """Absolute path of a ``packs.path`` value (relative to OUT, or already absolute).

    >>> pack_abspath("/o", "packs/ds/r-0000.iac")
    '/o/packs/ds/r-0000.iac'
    """
    return path if os.path.isabs(path) else os.path.join(os.path.abspath(out), *path.split("/"))


def _scan_crcs(scan_rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str | None], int]:
    return {
        (r["path"], r["member"]): int(r["crc32"]) for r in scan_rows if r.get("crc32") is not None
    }


def records_rows(
    pack: PackInfo, run_id: str, scan_crcs: Mapping[tuple[str, str | None], int]
) -> pa.Table:
    """The ``records`` rows of one pack: its index table plus row, raw_crc32, run_id, retired."""
    idx = pack.index
    n = idx.num_rows
    paths = idx.column("source_path").to_pylist()
    members = idx.column("source_member").to_pylist()
    raw_crc = [scan_crcs.get((p, m)) for p, m in zip(paths, members, strict=True)]
    cols: dict[str, Any] = {
        "pack_id": pa.array([pack.pack_id] * n, pa.string()),
        "row": pa.array(range(n), pa.int64()),
        "raw_crc32": pa.array(raw_crc, pa.int64()),
        "run_id": pa.array([run_id] * n, pa.string()),
        "retired": pa.array([False] * n, pa.bool_()),
        "retired_by_run": pa.nulls(n, pa.string()),
    }
    arrays = []
    for f in RECORDS_SCHEMA:
        arr = cols[f.name] if f.name in cols else idx.column(f.name)
        arrays.append(arr.cast(f.type))
    return pa.Table.from_arrays(arrays, schema=RECORDS_SCHEMA)


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
        "data_bytes": pack.data_bytes, "file_bytes": pack.file_bytes, "run_id": run_id, "created_at": now,
    }  # fmt: skip


def _duplicate_text(uid: str, path: str, member: str | None, kept: str) -> str:
    return f"DuplicateInstance: {location(path, member)} has the same SOPInstanceUID {uid} and bytes as {kept}"


def _conflict_texts(
    uid: str, members: Sequence[tuple[str, str | None, int]]
) -> list[tuple[str, str | None, str]]:
    out = []
    for i, (path, member, crc) in enumerate(members):
        if path == "<catalog>":
            continue
        others = [
            "a record already in the catalog"
            if p == "<catalog>"
            else f"{location(p, m)} (crc32 {c:08x})"
            for j, (p, m, c) in enumerate(members)
            if j != i
        ]
        text = (
            f"ConflictingInstance: SOPInstanceUID {uid} at {location(path, member)} (crc32 {crc:08x}) "
            f"has different bytes than {', '.join(others)}; all copies are packed"
        )
        out.append((path, member, text))
    return out


def catalog_rows(
    result: BuildResult,
    files: Sequence[InputFile],
    *,
    fingerprints: Mapping[str, str] | None = None,
    known_locations: Mapping[tuple[str, int], str] | None = None,
    now: datetime | None = None,
) -> CatalogRows:
    """Rows of ``records``, ``sources``, ``errors`` and ``packs`` for one build.

    ``files`` are the inputs the build scanned (one ``sources`` row each; a path that
    appears in the scan but not in ``files`` gets a row from a fresh ``os.stat``).
    ``fingerprints`` (path → :func:`fingerprint`) are those computed when the build was
    planned; missing ones are computed now. ``known_locations`` maps (SOPInstanceUID,
    raw CRC-32) of catalog records to a description, used to name the kept copy of a
    duplicate of an instance catalogued by an earlier run.
    """
    now = now or datetime.now(timezone.utc)
    run_id = result.run_id
    scan_crcs = _scan_crcs(result.scan_rows)
    records = [records_rows(p, run_id, scan_crcs) for p in result.packs]
    records_table = pa.concat_tables(records) if records else RECORDS_SCHEMA.empty_table()

    errors: list[dict[str, Any]] = [
        {"run_id": run_id, "source_path": e.source_path, "source_member": e.source_member,
         "stage": e.stage, "error": e.error, "at": now}
        for e in result.errors
    ]  # fmt: skip
    for d in result.duplicates:
        if d.kept_path is not None:
            kept = location(d.kept_path, d.kept_member) + " (packed by this run)"
        else:
            crc = scan_crcs.get((d.path, d.member))
            kept = (known_locations or {}).get(
                (d.sop_instance_uid, crc or -1), "a record already in the catalog"
            )
        errors.append({
            "run_id": run_id, "source_path": d.path, "source_member": d.member, "stage": DUPLICATE,
            "error": _duplicate_text(d.sop_instance_uid, d.path, d.member, kept), "at": now,
        })  # fmt: skip
    for c in result.conflicts:
        for path, member, text in _conflict_texts(c.sop_instance_uid, c.members):
            errors.append({
                "run_id": run_id, "source_path": path, "source_member": member, "stage": CONFLICT,
                "error": text, "at": now,
            })  # fmt: skip

    sources = _sources_rows(result, files, records_table, fingerprints or {}, run_id)
    packs = [_pack_row(p, result.out, run_id, now) for p in result.packs]
    return CatalogRows(
        run_id=run_id, records=records_table, sources=to_table("sources", sources),
        errors=to_table("errors", errors), packs=to_table("packs", packs),
    )  # fmt: skip


def _input_file(path: str) -> InputFile:
    """Stat a scanned path the way :func:`discover` does (same kind, same mtime → same fingerprint)."""
    try:
        return discover([glob.escape(path)])[0]
    except (InputNotFoundError, OSError, IndexError):
        return InputFile(path, 0, 0.0, "zip" if path.lower().endswith(".zip") else "file")


def _sources_rows(
    result: BuildResult,
    files: Sequence[InputFile],
    records: pa.Table,
    fingerprints: Mapping[str, str],
    run_id: str,
) -> list[dict[str, Any]]:
    scan_members: dict[str, list[str | None]] = {}
    for r in result.scan_rows:
        scan_members.setdefault(r["path"], []).append(r["member"])
    by_path = {f.path: f for f in files}
    for path in list(scan_members) + [
        p for p in Counter(records.column("source_path").to_pylist()) if p
    ]:
        if path not in by_path:
            by_path[path] = _input_file(path)
    packed = Counter(records.column("source_path").to_pylist())
    dups = Counter(d.path for d in result.duplicates)
    errs = Counter(e.source_path for e in result.errors)
    rows = []
    for path, f in by_path.items():
        entries = zip_entries(path) if f.kind == "zip" else None
        skipped = skipped_count(f.kind, entries, scan_members.get(path, []))
        n_packed, n_dups, n_errs = packed[path], dups[path], errs[path]
        scanned = (
            len(scan_members.get(path, [])) if result.scan_rows else n_packed + n_dups + n_errs
        )
        failed = n_errs > 0 and n_packed + n_dups == 0
        fp = fingerprints.get(path) or fingerprint(f, entries=entries)
        rows.append({
            "source_path": path, "size": f.size,
            "mtime": datetime.fromtimestamp(f.mtime, timezone.utc), "fingerprint": fp, "run_id": run_id,
            "status": FAILED_SOURCE if failed else INGESTED, "members": scanned + skipped,
            "packed": n_packed, "duplicates": n_dups, "errors": n_errs, "skipped": skipped,
            "superseded": False, "superseded_by_run": None,
        })  # fmt: skip
    return rows
