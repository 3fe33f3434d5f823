"""Walk planned scan units (a zip's member range, or a bare file) and decide every member's fate.

This is the whole of a Spark file source minus Spark, for any payload kind: the walk over
archives, nested zips and bare files is here; what a member *is* comes from a
:class:`MemberParser` (DICOM headers in :mod:`iac_spark.dicom.rows`, clinical notes in
:mod:`iac_spark.text.rows`). :func:`scan_unit` yields one tuple per member:

    ``(path, member, size, crc32, *parser.columns, status, error[, content])``

Every member gets exactly one fate, decided here and counted per source in
:class:`ScanStats`: ``ok`` (parsed), ``error`` (``error`` = ``"ErrorClass: message"`` naming
file and member) or ``skipped`` (plainly not this payload, e.g. ``LICENSE.txt``; rows only with
``include_skipped``). A nested zip is a container, not a member: its members count instead.
DROPMALFORMED drops error rows but still counts them; FAILFAST raises the first error.

Example:
    >>> import zipfile, tempfile, os
    >>> from pydicom.data import get_testdata_file
    >>> from iac_spark.dicom.rows import DicomParser
    >>> d = tempfile.mkdtemp(); z = os.path.join(d, "a.zip")
    >>> with zipfile.ZipFile(z, "w") as zf:
    ...     zf.write(get_testdata_file("CT_small.dcm"), "s/ct.dcm")
    ...     zf.writestr("LICENSE.txt", "CC BY 4.0")
    >>> stats = ScanStats()
    >>> rows = list(scan_unit(ScanUnit(z, "zip"), DicomParser(), stats=stats, include_skipped=True))
    >>> [(r[1], r[-2]) for r in rows]
    [('s/ct.dcm', 'ok'), ('LICENSE.txt', 'skipped')]
    >>> stats.counts[z]
    SourceCounts(members=2, ok=1, errors=0, skipped=1)
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal, Protocol

import pyarrow as pa

from ..errors import CorruptZipError, MemberError, error_text, location
from .archives import MemberInfo, join_member, list_members, looks_like_zip_name, read_bounded
from .plan import ScanUnit

__all__ = [
    "BASE_COLUMNS",
    "ERROR",
    "OK",
    "SKIPPED",
    "MemberParser",
    "Mode",
    "ScanStats",
    "ScanUnit",
    "SourceCounts",
    "rows_to_batch",
    "scan_columns",
    "scan_schema",
    "scan_unit",
]

Mode = Literal["PERMISSIVE", "DROPMALFORMED", "FAILFAST"]
Status = Literal["ok", "error", "skipped"]
OK: Status = "ok"
ERROR: Status = "error"
SKIPPED: Status = "skipped"

#: Columns every scan row starts with.
BASE_COLUMNS: tuple[str, ...] = ("path", "member", "size", "crc32")
_BASE_SCHEMA = pa.schema(
    [("path", pa.string()), ("member", pa.string()), ("size", pa.int64()), ("crc32", pa.int64())]
)
_TAIL_SCHEMA = pa.schema([("status", pa.string()), ("error", pa.string())])

_HEAD = 132
_NESTED_MAGIC = b"PK\x03\x04"


class MemberParser(Protocol):
    """What a payload kind tells the scanner: its columns, what it skips, how it parses.

    ``parse`` gets the member's location, its declared size, the first bytes already read
    (``head``), the whole bytes when ``whole_member`` is true (else None) and ``fetch(n)``
    returning the next ``n`` bytes of the stream. It returns the values of ``schema`` in order
    or raises a :class:`~iac_spark.errors.MemberError` (an error row). A parser may also have
    ``precheck(where, name, size)``, called before a member it does not skip is read, to refuse
    it by its declared size (an oversized note is never read into memory).
    """

    schema: pa.Schema
    whole_member: bool

    def skips(self, name: str, head: bytes) -> bool:
        """True for a member that is plainly not this payload (counted as skipped)."""
        ...

    def parse(
        self,
        where: str,
        name: str,
        size: int,
        head: bytes,
        data: bytes | None,
        fetch: Callable[[int], bytes],
    ) -> tuple[Any, ...]:
        """The payload column values of one member."""
        ...


def scan_schema(parser: MemberParser, *, content: bool = False) -> pa.Schema:
    """Arrow schema of the rows :func:`scan_unit` yields with ``parser``."""
    fields = [*_BASE_SCHEMA, *parser.schema, *_TAIL_SCHEMA]
    if content:
        fields.append(pa.field("content", pa.binary()))
    return pa.schema(fields)


def scan_columns(parser: MemberParser, *, content: bool = False) -> tuple[str, ...]:
    """Column names of :func:`scan_schema`."""
    return tuple(scan_schema(parser, content=content).names)


@dataclass(slots=True)
class SourceCounts:
    """Fates of one source's members: ``members == ok + errors + skipped``."""

    members: int = 0
    ok: int = 0
    errors: int = 0
    skipped: int = 0

    def add(self, other: SourceCounts) -> None:
        """Add ``other`` in place (a zip split over several units)."""
        self.members += other.members
        self.ok += other.ok
        self.errors += other.errors
        self.skipped += other.skipped


@dataclass
class ScanStats:
    """Per-source counts of every member seen (kept even when rows are dropped)."""

    counts: dict[str, SourceCounts] = field(default_factory=dict)

    def source(self, path: str) -> SourceCounts:
        c = self.counts.get(path)
        if c is None:
            c = self.counts[path] = SourceCounts()
        return c

    @property
    def total(self) -> SourceCounts:
        out = SourceCounts()
        for c in self.counts.values():
            out.add(c)
        return out


class _Scanner:
    """Holds the per-unit settings so the per-member path stays flat."""

    def __init__(
        self,
        parser: MemberParser,
        mode: Mode,
        content: bool,
        include_skipped: bool,
        stats: ScanStats,
    ) -> None:
        self.parser = parser
        self.mode = mode
        self.content = content
        self.include_skipped = include_skipped
        self.stats = stats
        self.blank = (None,) * len(parser.schema)
        self.whole = parser.whole_member or content

    def _row(
        self,
        path: str,
        member: str | None,
        size: int | None,
        crc: int | None,
        payload: tuple[Any, ...],
        status: Status,
        error: str | None,
        data: bytes | None,
    ) -> tuple[Any, ...]:
        row = (path, member, size, crc, *payload, status, error)
        return (*row, data) if self.content else row

    def error(
        self,
        exc: MemberError,
        path: str,
        member: str | None,
        size: int | None,
        crc: int | None,
        data: bytes | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        c = self.stats.source(path)
        c.members += 1
        c.errors += 1
        if self.mode == "FAILFAST":
            raise exc
        if self.mode == "PERMISSIVE":
            yield self._row(path, member, size, crc, self.blank, ERROR, error_text(exc), data)

    def zip_archive(
        self, zf: zipfile.ZipFile, path: str, prefix: str | None, start: int, stop: int | None
    ) -> Iterator[tuple[Any, ...]]:
        for m in list_members(zf)[start:stop]:
            yield from self.zip_member(zf, m, path, prefix)

    def zip_member(
        self, zf: zipfile.ZipFile, m: MemberInfo, path: str, prefix: str | None
    ) -> Iterator[tuple[Any, ...]]:
        name = join_member(prefix, m.name)
        where = location(path, name)
        try:
            stream: IO[bytes] = zf.open(m.info)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, ValueError) as exc:
            yield from self.error(
                CorruptZipError(f"{where}: cannot open member: {exc}"), path, name, m.size, m.crc32
            )
            return
        with stream:
            yield from self.member(stream, path, name, m.size, m.crc32, where)

    def member(
        self, stream: IO[bytes], path: str, name: str | None, size: int, crc: int | None, where: str
    ) -> Iterator[tuple[Any, ...]]:
        """One member or bare file; ``crc`` is None for bare files (computed here)."""
        data: bytes | None = None
        label = name if name is not None else path
        try:
            precheck = getattr(self.parser, "precheck", None)
            if (
                precheck is not None
                and (name is None or not looks_like_zip_name(name))
                and not self.parser.skips(label, b"")
            ):
                precheck(where, label, size)
            if self.whole or crc is None:
                data = read_bounded(stream, size, where)
                if len(data) < size:
                    raise CorruptZipError(f"{where}: member ends after {len(data)} of {size} bytes")
                if crc is None:
                    crc = zlib.crc32(data)
                head = data[:_HEAD]
            else:
                head = stream.read(min(size, _HEAD))
            if (name is not None and looks_like_zip_name(name)) or head[:4] == _NESTED_MAGIC:
                yield from self.nested(stream, data, head, path, name, size, crc, where)
                return
            if self.parser.skips(label, head):
                c = self.stats.source(path)
                c.members += 1
                c.skipped += 1
                if self.include_skipped:
                    yield self._row(path, name, size, crc, self.blank, SKIPPED, None, None)
                return
            if data is not None:
                view = io.BytesIO(data)
                view.seek(len(head))
                fetch: Callable[[int], bytes] = view.read
            else:
                fetch = stream.read
            payload = self.parser.parse(where, label, size, head, data, fetch)
        except MemberError as exc:
            yield from self.error(exc, path, name, size, crc, data)
            return
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            yield from self.error(
                CorruptZipError(f"{where}: cannot inflate member: {exc}"), path, name, size, crc
            )
            return
        c = self.stats.source(path)
        c.members += 1
        c.ok += 1
        yield self._row(path, name, size, crc, payload, OK, None, data)

    def nested(
        self,
        stream: IO[bytes],
        data: bytes | None,
        head: bytes,
        path: str,
        name: str | None,
        size: int,
        crc: int | None,
        where: str,
    ) -> Iterator[tuple[Any, ...]]:
        try:
            if data is None:
                data = head + read_bounded(stream, size - len(head), where)
            inner = zipfile.ZipFile(io.BytesIO(data))
        except MemberError as exc:
            yield from self.error(exc, path, name, size, crc)
            return
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            yield from self.error(
                CorruptZipError(f"{where}: nested zip cannot be opened: {exc}"),
                path,
                name,
                size,
                crc,
            )
            return
        with inner:
            yield from self.zip_archive(inner, path, name, 0, None)


def scan_unit(
    unit: ScanUnit,
    parser: MemberParser,
    *,
    content: bool = False,
    mode: Mode = "PERMISSIVE",
    include_skipped: bool = False,
    stats: ScanStats | None = None,
) -> Iterator[tuple[Any, ...]]:
    """Yield the rows of one unit; see the module docstring for the guarantees."""
    scanner = _Scanner(parser, mode, content, include_skipped, stats or ScanStats())
    if unit.kind == "file":
        try:
            fh = open(unit.path, "rb")  # noqa: SIM115 - closed below
            size = fh.seek(0, io.SEEK_END)
            fh.seek(0)
        except OSError as exc:
            yield from scanner.error(
                CorruptZipError(f"{unit.path}: cannot open file: {exc}"),
                unit.path,
                None,
                None,
                None,
            )
            return
        with fh:
            yield from scanner.member(fh, unit.path, None, size, None, unit.path)
        return
    try:
        zf = zipfile.ZipFile(unit.path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        yield from scanner.error(
            CorruptZipError(f"{unit.path}: not a readable zip archive: {exc}"),
            unit.path,
            None,
            None,
            None,
        )
        return
    with zf:
        yield from scanner.zip_archive(zf, unit.path, None, unit.start, unit.stop)


def rows_to_batch(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    """Row tuples (as :func:`scan_unit` yields them) → one Arrow record batch of ``schema``.

    >>> rows_to_batch([("/a.dcm", None, 3, 7)], _BASE_SCHEMA).num_rows
    1
    """
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    return pa.RecordBatch.from_arrays(
        [pa.array(cols[i], type=schema.field(i).type) for i in range(len(schema))], schema=schema
    )
