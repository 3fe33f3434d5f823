"""``verify``: check the published packs against their own index and against the catalog.

For every committed ``packs`` row: the file exists and opens; the header's
``payload_type`` / ``codec`` / ``num_records`` / ``data_length`` and the file size match the
catalog; the pack's index table and the catalog ``records`` of that pack agree row by
row (same count, same offsets, lengths, CRCs, UIDs, sources); every record's stored
bytes (``PackReader.read_payload``) lie inside the data segment and have the CRC-32 of
the index and of the catalog. With ``decode=True`` every record is also decoded by the
header codec and checked against ``raw_length`` and ``raw_crc32`` (the original member
bytes). Catalog records that point to a pack the catalog does not list are reported too.

Each problem names the pack file, the row and what differs. Nothing is repaired.

Example:
    >>> report = verify("demo_out")                                  # doctest: +SKIP
    >>> print(report)                                                # doctest: +SKIP
    verify demo_out (catalog version 1): OK — 2 packs, 240 records, 20.4 MB checked in 0.3 s
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from iatro.iac import PackReader, VariableRecordPack

from ..errors import VerifyError
from .rows import pack_abspath
from .snapshot import Snapshot
from .store import AsOf, CatalogStore, DeltaRsStore

__all__ = ["VerifyReport", "verify"]

#: (catalog column, pack index column) compared row by row.
_COMPARED = (
    "sop_instance_uid", "series_instance_uid", "study_instance_uid", "patient_id", "modality",
    "instance_number", "raw_length", "source_path", "source_member", "offset", "length", "crc32",
)  # fmt: skip


@dataclass
class VerifyReport:
    """What :func:`verify` checked and every problem it found (empty when ``ok``)."""

    out: str
    version: int
    decoded: bool
    packs_checked: int = 0
    records_checked: int = 0
    bytes_checked: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    truncated: int = 0  # problems left out past ``max_problems``

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def __str__(self) -> str:
        what = (
            f"{self.packs_checked} packs, {self.records_checked} records, "
            f"{self.bytes_checked / 1024**2:.1f} MB checked{' and decoded' if self.decoded else ''} "
            f"in {self.seconds:.1f} s"
        )
        head = f"verify {self.out} (catalog version {self.version}): "
        if self.ok:
            return head + "OK — " + what
        lines = [head + f"{len(self.problems) + self.truncated} PROBLEM(S) — " + what]
        lines += [f"  - {p}" for p in self.problems]
        if self.truncated:
            lines.append(f"  … and {self.truncated} more")
        return "\n".join(lines)

    def raise_for_problems(self) -> None:
        """Raise :class:`VerifyError` with the full report unless ``ok``."""
        if not self.ok:
            raise VerifyError(str(self))


class _Problems:
    def __init__(self, report: VerifyReport, limit: int) -> None:
        self.report, self.limit = report, limit

    def add(self, text: str) -> None:
        if len(self.report.problems) < self.limit:
            self.report.problems.append(text)
        else:
            self.report.truncated += 1


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return bool(a == b)


def _check_pack(
    pack: dict[str, Any],
    recs: list[dict[str, Any]],
    out: str,
    decode: bool,
    report: VerifyReport,
    problems: _Problems,
) -> None:
    pid = pack["pack_id"]
    path = pack_abspath(out, pack["path"])
    where = f"{pack['path']} (pack {pid})"
    if not os.path.isfile(path):
        problems.add(
            f"{where}: file is missing ({path}); {len(recs)} catalog records point into it"
        )
        return
    try:
        reader = PackReader(path)
    except Exception as exc:
        problems.add(f"{where}: cannot open: {type(exc).__name__}: {exc}")
        return
    try:
        try:
            header, index = dict(reader.header), reader.index_table
        except Exception as exc:
            problems.add(f"{where}: cannot read header/index: {type(exc).__name__}: {exc}")
            return
        report.packs_checked += 1
        for key, col in (("payload_type", "payload_type"), ("codec", "codec")):
            if header.get(key) != pack[col]:
                problems.add(f"{where}: header {key} {header.get(key)!r} != catalog {pack[col]!r}")
        n_header = header.get("num_records")
        if n_header is not None and int(n_header) != index.num_rows:
            problems.add(f"{where}: header num_records {n_header} != index rows {index.num_rows}")
        if index.num_rows != pack["num_records"]:
            problems.add(
                f"{where}: index has {index.num_rows} rows, catalog packs.num_records = {pack['num_records']}"
            )
        if len(recs) != index.num_rows:
            problems.add(
                f"{where}: index has {index.num_rows} rows, catalog has {len(recs)} records for this pack"
            )
        data_length = int(header.get("data_length", -1))
        if data_length != pack["data_bytes"]:
            problems.add(
                f"{where}: header data_length {data_length} != catalog data_bytes {pack['data_bytes']}"
            )
        size = os.path.getsize(path)
        if size != pack["file_bytes"]:
            problems.add(
                f"{where}: file has {size} bytes, catalog file_bytes = {pack['file_bytes']}"
            )
        by_row = {r["row"]: r for r in recs}
        for extra in sorted(set(by_row) - set(range(index.num_rows))):
            problems.add(f"{where} row {extra}: catalog record has no index row")
        codec = VariableRecordPack(path).codec if decode else None
        for i, ix in enumerate(index.to_pylist()):
            _check_row(reader, codec, where, i, ix, by_row.get(i), data_length, report, problems)
    finally:
        reader.close()


def _check_patient_pack(
    pack: dict[str, Any],
    recs: list[dict[str, Any]],
    out: str,
    decode: bool,
    report: VerifyReport,
    problems: _Problems,
) -> None:
    """A ``dicom_patient`` pack: the adapter's own checksums, and the catalog rows against its
    instance table (the pixels are re-encoded, so raw bytes cannot be compared)."""
    from ..packing.dicom_patient import verify_patient_pack

    path = pack_abspath(out, pack["path"])
    where = f"{pack['path']} (pack {pack['pack_id']})"
    if not os.path.isfile(path):
        problems.add(
            f"{where}: file is missing ({path}); {len(recs)} catalog records point into it"
        )
        return
    for p in verify_patient_pack(path, decode=decode):
        problems.add(f"{where}: {p.removeprefix(path + ': ')}")
    try:
        reader = PackReader(path)
        try:
            header, index = dict(reader.header), reader.index_table
        finally:
            reader.close()
    except Exception as exc:
        problems.add(f"{where}: cannot read header/index: {type(exc).__name__}: {exc}")
        return
    report.packs_checked += 1
    if header.get("payload_type") != pack["payload_type"]:
        problems.add(
            f"{where}: header payload_type {header.get('payload_type')!r} != catalog {pack['payload_type']!r}"
        )
    size = os.path.getsize(path)
    if size != pack["file_bytes"]:
        problems.add(f"{where}: file has {size} bytes, catalog file_bytes = {pack['file_bytes']}")
    if index.num_rows != pack["num_records"] or len(recs) != index.num_rows:
        problems.add(
            f"{where}: pack has {index.num_rows} instances, catalog packs.num_records = "
            f"{pack['num_records']} and {len(recs)} records"
        )
    uids = index.column("sop_instance_uid").to_pylist()
    cols = {c: index.column(c).to_pylist() for c in ("offset", "length", "crc32")}
    for rec in recs:
        i = rec["row"]
        report.records_checked += 1
        if not 0 <= i < index.num_rows:
            problems.add(f"{where} row {i}: catalog record has no instance row")
            continue
        diffs = [
            f"{c} catalog {rec[c]!r} != pack {cols[c][i]!r}" for c in cols if rec[c] != cols[c][i]
        ]
        if rec["sop_instance_uid"] != uids[i]:
            diffs.append(
                f"sop_instance_uid catalog {rec['sop_instance_uid']!r} != pack {uids[i]!r}"
            )
        if diffs:
            problems.add(f"{where} row {i}: " + "; ".join(diffs))


def _check_row(
    reader: PackReader, codec: Any, where: str, i: int, ix: dict[str, Any], rec: dict[str, Any] | None,
    data_length: int, report: VerifyReport, problems: _Problems,
) -> None:  # fmt: skip
    at = f"{where} row {i}"
    if rec is None:
        problems.add(f"{at}: index row has no catalog record (uid {ix.get('sop_instance_uid')})")
    else:
        diffs = [
            f"{c} catalog {rec[c]!r} != index {ix.get(c)!r}"
            for c in _COMPARED
            if not _same(rec[c], ix.get(c))
        ]
        if diffs:
            problems.add(f"{at}: " + "; ".join(diffs))
    report.records_checked += 1
    offset, length = int(ix["offset"]), int(ix["length"])
    if offset < 0 or offset + length > data_length:
        problems.add(
            f"{at}: bytes [{offset}, {offset + length}) lie outside the data segment of {data_length} bytes"
        )
        return
    try:
        payload = reader.read_payload(i)
    except Exception as exc:
        problems.add(f"{at}: cannot read stored bytes: {type(exc).__name__}: {exc}")
        return
    report.bytes_checked += len(payload)
    if len(payload) != length:
        problems.add(f"{at}: read {len(payload)} stored bytes, index length {length}")
    crc = zlib.crc32(payload)
    if crc != int(ix["crc32"]):
        problems.add(
            f"{at}: stored bytes crc32 {crc:08x} != index crc32 {int(ix['crc32']):08x} (data corrupted)"
        )
    elif rec is not None and rec["crc32"] is not None and crc != rec["crc32"]:
        problems.add(f"{at}: stored bytes crc32 {crc:08x} != catalog crc32 {rec['crc32']:08x}")
    if codec is None:
        return
    try:
        raw = codec.decode(payload)
    except Exception as exc:
        problems.add(f"{at}: cannot decode: {type(exc).__name__}: {exc}")
        return
    raw_bytes = bytes(raw)
    want_len = rec["raw_length"] if rec is not None else ix.get("raw_length")
    if want_len is not None and len(raw_bytes) != want_len:
        problems.add(f"{at}: decoded {len(raw_bytes)} bytes, raw_length {want_len}")
    if (
        rec is not None
        and rec["raw_crc32"] is not None
        and zlib.crc32(raw_bytes) != rec["raw_crc32"]
    ):
        problems.add(
            f"{at}: decoded bytes crc32 {zlib.crc32(raw_bytes):08x} != catalog raw_crc32 {rec['raw_crc32']:08x}"
        )


def verify(
    out: str,
    *,
    decode: bool = False,
    as_of: AsOf = None,
    pack_ids: Sequence[str] | None = None,
    max_problems: int = 1000,
    store: CatalogStore | None = None,
) -> VerifyReport:
    """Check every committed pack (or only ``pack_ids``) of ``out``; never raises on a mismatch.

    Returns a :class:`VerifyReport`; call :meth:`VerifyReport.raise_for_problems` to turn
    problems into :class:`VerifyError`. Raises :class:`~iac_spark.errors.CatalogError` if
    there is no catalog.
    """
    started = time.perf_counter()
    out = os.path.abspath(out)
    snap = Snapshot.load(store or DeltaRsStore(out), as_of)
    report = VerifyReport(out=out, version=snap.version, decoded=decode)
    problems = _Problems(report, max_problems)
    packs = snap.table("packs")
    records = snap.table("records")
    if pack_ids is not None:
        wanted = pa.array(sorted(set(pack_ids)), pa.string())
        packs = packs.filter(pc.is_in(packs.column("pack_id"), wanted))
        records = records.filter(pc.is_in(records.column("pack_id"), wanted))
    by_pack: dict[str, list[dict[str, Any]]] = {}
    for r in records.to_pylist():
        by_pack.setdefault(r["pack_id"], []).append(r)
    seen: set[str] = set()
    for pack in packs.to_pylist():
        if pack["pack_id"] in seen:
            problems.add(
                f"{pack['path']} (pack {pack['pack_id']}): listed more than once in the packs table"
            )
            continue
        seen.add(pack["pack_id"])
        check = _check_patient_pack if pack["payload_type"] == "dicom_patient" else _check_pack
        check(pack, by_pack.get(pack["pack_id"], []), out, decode, report, problems)
    for pid in sorted(set(by_pack) - seen):
        problems.add(
            f"pack {pid}: {len(by_pack[pid])} catalog records point to a pack the packs table does not list"
        )
    report.seconds = time.perf_counter() - started
    return report
