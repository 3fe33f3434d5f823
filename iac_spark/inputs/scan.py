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

Archives are opened by :func:`~iac_spark.inputs.archive.open_archive`: a zip without its
central directory is salvaged (its complete members are rows, the member it is cut in is an
error row that says so), an unreadable one is one error row. Bad input is bounded by
:class:`~iac_spark.inputs.limits.InputLimits`: a member above ``maxMemberBytes`` (or
inflating past its declared size) is a ``MemberTooLargeError`` row, a nested zip that would
open deeper than ``maxNestingDepth`` a ``NestingTooDeepError`` row, an archive listing more
than ``maxMembersPerArchive`` entries one ``TooManyMembersError`` row. Gzip members (gzip
magic, e.g. ``x.dcm.gz``) are scanned by their inflated content, named without ``.gz``
for recognition; their rows carry the content's size and CRC-32, so packs hold the DICOM.
A unit of kind ``"skip"`` (a symlink out of the input root, something that is not a regular
file: see :func:`~iac_spark.inputs.discover.discover`) is one skipped member, never opened.

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
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal, Protocol

import pyarrow as pa

from ..errors import CorruptZipError, MemberError, error_text, location
from .archive import Archive, Member, UnreadableFileError, open_archive
from .archives import join_member, looks_like_zip_name, read_bounded
from .gzipped import GZIP_MAGIC, content_name, gzip_size_crc, open_gzip_member, read_gzip_member
from .limits import InputLimits
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


class _Fetch:
    """``fetch(n)`` over a member stream, plus ``skip(n)``: a seek where the stream can
    seek (bare files, stored members, bytes in memory), else a read with the bytes
    discarded 1 MiB at a time (see :func:`~iac_spark.dicom.header.parse_header`)."""

    __slots__ = ("_read", "_stream")

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._read = stream.read

    def __call__(self, n: int) -> bytes:
        return self._read(n)

    def skip(self, n: int) -> None:
        if n <= 0:
            return
        if self._stream.seekable():
            self._stream.seek(n, io.SEEK_CUR)
            return
        while n > 0:
            chunk = self._read(min(n, _SKIP_CHUNK))
            if not chunk:
                return
            n -= len(chunk)


_SKIP_CHUNK = 1 << 20

# what _Scanner.decide found a member to be
_NESTED, _SKIP, _OK, _ERR = "nested", "skip", "ok", "error"
_Outcome = tuple[str, Any, int | None, int | None, bytes | None]  # kind, value, size, crc, data


class _Scanner:
    """Holds the per-unit settings so the per-member path stays flat."""

    def __init__(
        self,
        parser: MemberParser,
        mode: Mode,
        content: bool,
        include_skipped: bool,
        stats: ScanStats,
        limits: InputLimits,
    ) -> None:
        self.parser = parser
        self.mode = mode
        self.content = content
        self.include_skipped = include_skipped
        self.stats = stats
        self.limits = limits
        self.blank = (None,) * len(parser.schema)
        self.whole = parser.whole_member or content
        self.precheck: Callable[[str, str, int], None] | None = getattr(parser, "precheck", None)

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

    def skipped(
        self, path: str, member: str | None, size: int | None, crc: int | None
    ) -> Iterator[tuple[Any, ...]]:
        c = self.stats.source(path)
        c.members += 1
        c.skipped += 1
        if self.include_skipped:
            yield self._row(path, member, size, crc, self.blank, SKIPPED, None, None)

    def archive(
        self, arch: Archive, path: str, prefix: str | None, depth: int, start: int, stop: int | None
    ) -> Iterator[tuple[Any, ...]]:
        """Members ``[start, stop)`` of ``arch``, then (in the unit that starts at 0) its problem."""
        members = arch.members
        for m in members[start:stop] if start or stop is not None else members:
            yield from self.zip_member(arch, m, path, prefix, depth)
        problem = arch.problem
        if problem is not None and start == 0:
            name = prefix if problem.member is None else join_member(prefix, problem.member)
            yield from self.error(problem.error, path, name, None, None)

    def zip_member(
        self, arch: Archive, m: Member, path: str, prefix: str | None, depth: int
    ) -> Iterator[tuple[Any, ...]]:
        name = join_member(prefix, m.name)
        try:
            stream = arch.open(m)
        except MemberError as exc:
            yield from self.error(exc, path, name, m.size, m.crc32)
            return
        except OSError as exc:
            err = UnreadableFileError(f"{location(path, name)}: cannot read member: {exc}")
            yield from self.error(err, path, name, m.size, m.crc32)
            return
        with stream:
            yield from self.member(stream, path, name, m.size, m.crc32, depth, arch, m)

    def member(
        self,
        stream: IO[bytes],
        path: str,
        name: str | None,
        size: int,
        crc: int | None,
        depth: int,
        arch: Archive | None = None,
        m: Member | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        """One member or bare file; ``crc`` is None for bare files (computed here)."""
        where = location(path, name)
        try:
            kind, value, size_, crc_, data = self.decide(
                stream, path, name, size, crc, where, depth, arch, m
            )
        except MemberError as exc:
            yield from self.error(exc, path, name, size, crc)
            return
        except OSError as exc:
            err = UnreadableFileError(f"{where}: cannot read: {exc}")
            yield from self.error(err, path, name, size, crc)
            return
        if kind == _OK:
            c = self.stats.source(path)
            c.members += 1
            c.ok += 1
            yield self._row(path, name, size_, crc_, value, OK, None, data)
        elif kind == _NESTED:
            with value:
                yield from self.archive(value, path, name, depth + 1, 0, None)
        elif kind == _SKIP:
            yield from self.skipped(path, name, size_, crc_)
        else:
            yield from self.error(value, path, name, size_, crc_, data)

    def decide(
        self,
        stream: IO[bytes],
        path: str,
        name: str | None,
        size: int,
        crc: int | None,
        where: str,
        depth: int,
        arch: Archive | None,
        m: Member | None,
    ) -> _Outcome:
        """What a member is, reading as little of it as that takes; raises MemberError for
        what fails before its bytes are in hand (then ``size``/``crc`` are the stored ones).

        Whole-member reads (content, text, bare files) read the member first when its
        declared size is within ``maxMemberBytes`` (one copy, as before salvage and gzip
        were read); otherwise only its first bytes, enough to tell a nested zip, gzip or a
        plainly-skipped member from one that is refused for its size.
        """
        label = name if name is not None else path
        lim = self.limits
        zip_name = name is not None and looks_like_zip_name(name)
        data: bytes | None = None
        if (self.whole or crc is None) and size <= lim.max_member_bytes:
            if self.precheck is not None and not zip_name and not self.parser.skips(label, b""):
                self.precheck(where, label, size)  # an oversized note is refused unread
            data = self.rest(stream, b"", size, where)
            head = data[:_HEAD]
        else:
            head = stream.read(min(size, _HEAD))
        if zip_name or head[:4] == _NESTED_MAGIC:
            lim.check_depth(depth + 1, where)
            blob = data if data is not None else self.rest(stream, head, size, where)
            return _NESTED, open_archive(io.BytesIO(blob), where, lim), size, crc, None
        if head[:3] == GZIP_MAGIC:
            raw = data if data is not None else self.rest(stream, head, size, where)
            return self.gzip(raw, label, size, where, depth)
        if self.parser.skips(label, head):
            return _SKIP, None, size, crc, None
        lim.check_member_size(size, where)
        if self.precheck is not None:
            self.precheck(where, label, size)
        if data is not None:
            if crc is None:
                crc = zlib.crc32(data)
            view = io.BytesIO(data)
            view.seek(len(head))
            fetch = _Fetch(view)
        else:
            if arch is not None and m is not None:
                arch.check_declared_size(m)  # a deflated member too big for its size: a bomb?
            fetch = _Fetch(stream)
        try:
            payload = self.parser.parse(where, label, size, head, data, fetch)
        except MemberError as exc:
            return _ERR, exc, size, crc, data
        return _OK, payload, size, crc, data

    def gzip(self, raw: bytes, label: str, size: int, where: str, depth: int) -> _Outcome:
        """A gzip member (``raw``: its stored bytes): its content is what is scanned (named
        without ``.gz``); the row's size and CRC-32 are the content's. A metadata scan
        inflates it twice (size and CRC, then the header) rather than hold it: memory stays
        at the compressed bytes."""
        lim = self.limits
        label = content_name(label)
        bound = lim.max_member_bytes
        content: bytes | None = None
        cstream: IO[bytes] | None = None
        try:
            if self.whole or looks_like_zip_name(label):
                content = read_gzip_member(io.BytesIO(raw), where=where, max_bytes=bound)
                size, crc = len(content), zlib.crc32(content)
                chead = content[:_HEAD]
            else:
                size, crc = gzip_size_crc(io.BytesIO(raw), where=where, max_bytes=bound)
                cstream = open_gzip_member(io.BytesIO(raw), where=where, max_bytes=bound)
                chead = cstream.read(min(size, _HEAD))
            if looks_like_zip_name(label) or chead[:4] == _NESTED_MAGIC:
                lim.check_depth(depth + 1, where)
                if content is None:
                    content = read_gzip_member(io.BytesIO(raw), where=where, max_bytes=bound)
                return _NESTED, open_archive(io.BytesIO(content), where, lim), size, crc, None
            if self.parser.skips(label, chead):
                return _SKIP, None, size, crc, None
            try:
                if self.precheck is not None:
                    self.precheck(where, label, size)
                if content is not None:
                    view = io.BytesIO(content)
                    view.seek(len(chead))
                    fetch = _Fetch(view)
                else:
                    assert cstream is not None
                    fetch = _Fetch(cstream)
                payload = self.parser.parse(where, label, size, chead, content, fetch)
            except MemberError as exc:
                return _ERR, exc, size, crc, content
            return _OK, payload, size, crc, content
        finally:
            if cstream is not None:
                cstream.close()

    def rest(self, stream: IO[bytes], head: bytes, size: int, where: str) -> bytes:
        """The whole member (``head`` already read), at most ``maxMemberBytes``; reading to
        its end checks its CRC-32 (zip members)."""
        self.limits.check_member_size(size, where)
        data = head + read_bounded(stream, size - len(head), where, self.limits.max_member_bytes)
        if len(data) < size:
            raise CorruptZipError(f"{where}: member ends after {len(data)} of {size} bytes")
        return data


def scan_unit(
    unit: ScanUnit,
    parser: MemberParser,
    *,
    content: bool = False,
    mode: Mode = "PERMISSIVE",
    include_skipped: bool = False,
    stats: ScanStats | None = None,
    limits: InputLimits | None = None,
) -> Iterator[tuple[Any, ...]]:
    """Yield the rows of one unit; see the module docstring for the guarantees.

    ``limits`` (default :class:`~iac_spark.inputs.limits.InputLimits`) bound member sizes,
    nesting depth and members per archive.
    """
    lim = limits or InputLimits()
    scanner = _Scanner(parser, mode, content, include_skipped, stats or ScanStats(), lim)
    if unit.kind == "skip":
        yield from scanner.skipped(unit.path, None, None, None)
        return
    if unit.kind == "file":
        try:
            fh = open(unit.path, "rb")  # noqa: SIM115 - closed below
            size = os.fstat(fh.fileno()).st_size
        except OSError as exc:
            err = UnreadableFileError(f"{unit.path}: cannot open file: {exc}")
            yield from scanner.error(err, unit.path, None, None, None)
            return
        with fh:
            yield from scanner.member(fh, unit.path, None, size, None, 0)
        return
    with open_archive(unit.path, unit.path, lim) as arch:
        yield from scanner.archive(arch, unit.path, None, 0, unit.start, unit.stop)


def rows_to_batch(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    """Row tuples (as :func:`scan_unit` yields them) → one Arrow record batch of ``schema``.

    >>> rows_to_batch([("/a.dcm", None, 3, 7)], _BASE_SCHEMA).num_rows
    1
    """
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    return pa.RecordBatch.from_arrays(
        [pa.array(cols[i], type=schema.field(i).type) for i in range(len(schema))], schema=schema
    )
