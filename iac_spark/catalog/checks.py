"""``verify``: check the published packs against their own index and against the catalog.

For every committed ``packs`` row, cheapest first: the file exists and has the catalog's
size and whole-file CRC-32C (``packs.file_crc32c``: one streamed read catches a changed byte
anywhere, padding included; null in catalogs made before the column, then skipped); the
header parses and its ``payload_type`` / ``codec`` / ``num_records`` / ``data_length`` match
the catalog; the slide and index tables each parse from their own span and hold valid data
(a damaged one is named, never a crash such as a ``UnicodeDecodeError``); the slide table and
``slide_idx`` are what the layout derives from the index; the index and the catalog
``records`` of that pack agree row by row (same count, same offsets, lengths, CRCs, UIDs,
sources); every record's stored bytes lie inside the data segment and have the CRC-32 of the
index and of the catalog, so a corrupted record is named by its row. With ``decode=True``
every record is also decoded by the header codec and checked against ``raw_length`` and
``raw_crc32`` (the original member bytes). Catalog records that point to a pack the catalog
does not list are reported too.

Each problem names the pack file, the section or row and what differs; a file checksum
mismatch that no finer check explains (a changed byte of padding) is reported as such.
Nothing is repaired.

Example:
    >>> report = verify("demo_out")                                  # doctest: +SKIP
    >>> print(report)                                                # doctest: +SKIP
    verify demo_out (catalog version 1): OK — 2 packs, 240 records, 20.4 MB checked in 0.3 s
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from iatro.iac import Codec, PackReader

from ..errors import CorruptPackError, VerifyError
from ..inputs.discover import normalize_path
from ..packing.layout import LAYOUTS
from ..packing.reading import open_pack, pack_tables, read_section
from ..packing.shard import file_crc32c
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
    checksums_compared: int = 0  # packs whose whole-file CRC-32C was compared with the catalog
    checksums_missing: int = 0  # packs whose catalog row has none (catalogs made before it)

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
        if self.checksums_missing:
            what += f" ({self.checksums_missing} packs without a recorded file checksum)"
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

    @property
    def count(self) -> int:
        return len(self.report.problems) + self.report.truncated

    def add(self, text: str) -> None:
        if len(self.report.problems) < self.limit:
            self.report.problems.append(text)
        else:
            self.report.truncated += 1


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return bool(a == b)


_PackCheck = Callable[
    [dict[str, Any], list[dict[str, Any]], str, str, bool, VerifyReport, "_Problems"], None
]


def _checked_file(body: _PackCheck) -> Callable[..., None]:
    """Run ``body`` (the checks of one pack's contents) after the file checks, cheapest first:
    the file exists, has the catalog's size and the catalog's whole-file CRC-32C (one streamed
    read). A checksum mismatch that the finer checks of ``body`` do not explain (they name the
    section or row) is reported as such: the change is in bytes no reader uses, e.g. padding."""

    def check(
        pack: dict[str, Any], recs: list[dict[str, Any]], out: str, decode: bool,
        report: VerifyReport, problems: _Problems,
    ) -> None:  # fmt: skip
        path = pack_abspath(out, pack["path"])
        where = f"{pack['path']} (pack {pack['pack_id']})"
        if not os.path.isfile(path):
            problems.add(
                f"{where}: file is missing ({path}); {len(recs)} catalog records point into it"
            )
            return
        before = problems.count
        size = os.path.getsize(path)
        if size != pack["file_bytes"]:
            problems.add(
                f"{where}: file has {size} bytes, catalog file_bytes = {pack['file_bytes']}"
            )
        want = pack.get("file_crc32c")
        changed = None
        if want is None:  # a catalog made before packs.file_crc32c existed
            report.checksums_missing += 1
        else:
            got = file_crc32c(path)
            report.checksums_compared += 1
            if got != int(want):
                changed = (
                    f"{where}: whole-file crc32c {got:08x} != catalog file_crc32c "
                    f"{int(want):08x}: the file changed after it was published, in bytes no "
                    "other check reads (padding)"
                )
        try:
            body(pack, recs, path, where, decode, report, problems)
        finally:
            if changed is not None and problems.count == before:
                problems.add(changed)

    return check


def _open(path: str, where: str, problems: _Problems) -> tuple[PackReader, dict[str, Any]] | None:
    try:
        return open_pack(path, where)
    except CorruptPackError as exc:
        problems.add(str(exc))
    except Exception as exc:
        problems.add(f"{where}: cannot open: {type(exc).__name__}: {exc}")
    return None


def _sections(
    path: str, header: dict[str, Any], where: str, problems: _Problems
) -> tuple[pa.Table | None, pa.Table | None]:
    """The slide and index tables, each parsed from its own span (one damaged table does not
    hide the other); a problem names the section that does not parse."""
    out: list[pa.Table | None] = []
    for name in ("slide", "index"):
        try:
            out.append(read_section(path, header, name))
        except Exception as exc:
            problems.add(f"{where}: {name} table does not parse: {type(exc).__name__}: {exc}")
            out.append(None)
    return out[0], out[1]


def _diff_rows(stored: pa.Table, derived: pa.Table, what: str) -> str | None:
    """What differs first between a stored table and the one the index gives, or None."""
    if stored.num_rows != derived.num_rows:
        return f"{what} has {stored.num_rows} rows, the index gives {derived.num_rows}"
    for i, (x, y) in enumerate(zip(stored.to_pylist(), derived.to_pylist(), strict=True)):
        diffs = [
            f"{k} {y[k]!r} expected, {x.get(k)!r} stored" for k in y if not _same(x.get(k), y[k])
        ]
        if diffs:
            return f"{what} row {i} is not what the index gives: " + "; ".join(diffs)
    return None


def _check_layout(
    pack: dict[str, Any], slides: pa.Table | None, index: pa.Table, where: str,
    problems: _Problems,
) -> None:  # fmt: skip
    """The slide table and the derived index columns (``slide_idx``) are what the layout
    derives from the index, and the catalog's patient and series counts match."""
    layout = LAYOUTS.get(pack["payload_type"])
    if layout is None or not layout.mergeable:
        return
    names = layout.caller_schema.names
    if not set(names) <= set(index.column_names):
        problems.add(
            f"{where}: index table lacks columns {sorted(set(names) - set(index.column_names))}"
        )
        return
    want_slides, want_index = layout.tables(index.select(names))
    if slides is not None:
        diff = _diff_rows(slides, want_slides, "slide table")
        if diff is not None:
            problems.add(f"{where}: {diff}")
    if "slide_idx" in want_index.column_names and "slide_idx" in index.column_names:
        diff = _diff_rows(index.select(["slide_idx"]), want_index.select(["slide_idx"]), "index")
        if diff is not None:
            problems.add(f"{where}: {diff}")
    patients = len(set(index.column("patient_id").to_pylist()))
    if pack.get("num_patients") is not None and patients != pack["num_patients"]:
        problems.add(
            f"{where}: index has {patients} patients, catalog num_patients = {pack['num_patients']}"
        )
    n_series = pack.get("num_series")
    if layout.has_slide_idx and slides is not None and n_series not in (None, slides.num_rows):
        problems.add(
            f"{where}: slide table has {slides.num_rows} series, catalog num_series = {n_series}"
        )


@_checked_file
def _check_pack(
    pack: dict[str, Any],
    recs: list[dict[str, Any]],
    path: str,
    where: str,
    decode: bool,
    report: VerifyReport,
    problems: _Problems,
) -> None:
    opened = _open(path, where, problems)
    if opened is None:
        return
    reader, header = opened
    reader.close()  # the tables and payloads are read from their spans below
    report.packs_checked += 1
    for key, col in (("payload_type", "payload_type"), ("codec", "codec")):
        if header.get(key) != pack[col]:
            problems.add(f"{where}: header {key} {header.get(key)!r} != catalog {pack[col]!r}")
    data_offset = int(header.get("data_offset", -1))
    data_length = int(header.get("data_length", -1))
    if data_length != pack["data_bytes"]:
        problems.add(
            f"{where}: header data_length {data_length} != catalog data_bytes {pack['data_bytes']}"
        )
    if data_offset < 0 or data_offset + data_length > os.path.getsize(path):
        problems.add(
            f"{where}: header data segment [{data_offset}, +{data_length}) runs past the file"
        )
        return
    slides, index = _sections(path, header, where, problems)
    if index is None:
        return
    n_header = header.get("num_records")
    if n_header is not None and int(n_header) != index.num_rows:
        problems.add(f"{where}: header num_records {n_header} != index rows {index.num_rows}")
    n_slides = header.get("num_slides")
    if slides is not None and n_slides is not None and int(n_slides) != slides.num_rows:
        problems.add(f"{where}: header num_slides {n_slides} != slide table rows {slides.num_rows}")
    if index.num_rows != pack["num_records"]:
        problems.add(
            f"{where}: index has {index.num_rows} rows, catalog packs.num_records = {pack['num_records']}"
        )
    if len(recs) != index.num_rows:
        problems.add(
            f"{where}: index has {index.num_rows} rows, catalog has {len(recs)} records for this pack"
        )
    _check_layout(pack, slides, index, where, problems)
    by_row = {r["row"]: r for r in recs}
    for extra in sorted(set(by_row) - set(range(index.num_rows))):
        problems.add(f"{where} row {extra}: catalog record has no index row")
    codec = None
    if decode:
        codec = Codec.create(header.get("codec", "none"), **(header.get("codec_params") or {}))
    with open(path, "rb") as fh:
        data = _DataSegment(fh, data_offset, data_length)
        for i, ix in enumerate(index.to_pylist()):
            _check_row(data, codec, where, i, ix, by_row.get(i), report, problems)


class _DataSegment:
    """Reads stored payloads straight from the data segment of an open pack file."""

    def __init__(self, fh: Any, offset: int, length: int) -> None:
        self.fd, self.offset, self.length = fh.fileno(), offset, length

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, self.offset + offset)


@_checked_file
def _check_patient_pack(
    pack: dict[str, Any],
    recs: list[dict[str, Any]],
    path: str,
    where: str,
    decode: bool,
    report: VerifyReport,
    problems: _Problems,
) -> None:
    """A ``dicom_patient`` pack: the adapter's own checksums, and the catalog rows against its
    instance table (the pixels are re-encoded, so raw bytes cannot be compared)."""
    from ..packing.dicom_patient import verify_patient_pack

    opened = _open(path, where, problems)
    if opened is None:
        return
    reader, header = opened
    try:
        _, index = pack_tables(reader, header, where)  # a damaged table is named, not a crash
    except CorruptPackError as exc:
        problems.add(str(exc))
        return
    finally:
        reader.close()
    for p in verify_patient_pack(path, decode=decode):
        problems.add(f"{where}: {p.removeprefix(path + ': ')}")
    report.packs_checked += 1
    if header.get("payload_type") != pack["payload_type"]:
        problems.add(
            f"{where}: header payload_type {header.get('payload_type')!r} != catalog {pack['payload_type']!r}"
        )
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
    data: _DataSegment, codec: Any, where: str, i: int, ix: dict[str, Any],
    rec: dict[str, Any] | None, report: VerifyReport, problems: _Problems,
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
    if offset < 0 or offset + length > data.length:
        problems.add(
            f"{at}: bytes [{offset}, {offset + length}) lie outside the data segment of {data.length} bytes"
        )
        return
    try:
        payload = data.read(offset, length)
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
    out = normalize_path(out)
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
        try:
            check(pack, by_pack.get(pack["pack_id"], []), out, decode, report, problems)
        except Exception as exc:  # never a crash: every problem names its pack
            problems.add(
                f"{pack['path']} (pack {pack['pack_id']}): cannot be checked: "
                f"{type(exc).__name__}: {exc}"
            )
    for pid in sorted(set(by_pack) - seen):
        problems.add(
            f"pack {pid}: {len(by_pack[pid])} catalog records point to a pack the packs table does not list"
        )
    report.seconds = time.perf_counter() - started
    return report
