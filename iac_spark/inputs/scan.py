"""Scan planned units (a zip's member range, or a bare file) into ``zipdcm`` rows.

This is the whole of the ``zipdcm`` reader minus Spark: :func:`scan_unit` yields
one tuple per member in :data:`COLUMNS` order. Every member ends in exactly one
of: a parsed row, an error row (``error`` = ``"ErrorClass: message"`` naming file
and member), or a skip counted in :class:`ScanStats` (plainly not DICOM, such as
``LICENSE.txt``). Nothing is dropped silently: DROPMALFORMED drops error rows but
still counts them.

Example:
    >>> import io, zipfile, tempfile, os
    >>> from pydicom.data import get_testdata_file
    >>> d = tempfile.mkdtemp(); z = os.path.join(d, "a.zip")
    >>> with zipfile.ZipFile(z, "w") as zf:
    ...     zf.write(get_testdata_file("CT_small.dcm"), "s/ct.dcm")
    ...     zf.writestr("LICENSE.txt", "CC BY 4.0")
    >>> stats = ScanStats()
    >>> rows = list(scan_unit(ScanUnit(z, "zip"), stats=stats))
    >>> [(r[1], r[8], r[-1]) for r in rows], stats.skipped
    ([('s/ct.dcm', 'CT', None)], 1)
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from ..errors import CorruptZipError, MemberError, error_text, location
from .archives import MemberInfo, list_members, looks_like_zip_name, read_bounded
from ..dicom.header import Header, is_plainly_not_dicom, parse_header
from ..dicom.dicom_json import JsonEncoderCache

__all__ = [
    "COLUMNS",
    "Mode",
    "ScanStats",
    "ScanUnit",
    "scan_unit",
]

Mode = Literal["PERMISSIVE", "DROPMALFORMED", "FAILFAST"]

#: Output columns in contract order (``content`` is appended only when requested).
COLUMNS: tuple[str, ...] = (
    "path",
    "member",
    "size",
    "crc32",
    "sop_instance_uid",
    "series_instance_uid",
    "study_instance_uid",
    "patient_id",
    "modality",
    "sop_class_uid",
    "transfer_syntax_uid",
    "instance_number",
    "rows",
    "columns",
    "number_of_frames",
    "has_pixel_data",
    "meta",
    "error",
)

_HEAD = 132
_NESTED_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class ScanUnit:
    """A picklable piece of work: a whole bare file, or members ``[start, stop)`` of a zip.

    ``start``/``stop`` index :func:`~iac_spark.inputs.archives.list_members` (``stop=None``:
    to the end); ``weight`` is what the planner balanced on.
    """

    path: str
    kind: Literal["zip", "file"]
    start: int = 0
    stop: int | None = None
    weight: int = 0


@dataclass
class ScanStats:
    """Per-unit counts: every member is exactly one of rows-ok, errors or skipped."""

    members: int = 0
    parsed: int = 0
    errors: int = 0
    skipped: int = 0
    skipped_names: list[str] = field(default_factory=list)


def _row(
    path: str,
    member: str | None,
    size: int | None,
    crc: int | None,
    header: Header | None,
    error: str | None,
    content: bytes | None,
    want_content: bool,
) -> tuple[Any, ...]:
    if header is None:
        base: tuple[Any, ...] = (path, member, size, crc) + (None,) * 13 + (error,)
    else:
        h = header
        base = (
            path, member, size, crc,
            h.sop_instance_uid, h.series_instance_uid, h.study_instance_uid, h.patient_id,
            h.modality, h.sop_class_uid, h.transfer_syntax_uid, h.instance_number,
            h.rows, h.columns, h.number_of_frames, h.has_pixel_data, h.meta, error,
        )  # fmt: skip
    return (*base, content) if want_content else base


class _Scanner:
    """Holds the per-unit settings so the per-member path stays flat."""

    def __init__(
        self, content: bool, mode: Mode, cache: JsonEncoderCache, stats: ScanStats
    ) -> None:
        self.content = content
        self.mode = mode
        self.cache = cache
        self.stats = stats

    def error(
        self,
        exc: MemberError,
        path: str,
        member: str | None,
        size: int | None,
        crc: int | None,
        data: bytes | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        self.stats.errors += 1
        if self.mode == "FAILFAST":
            raise exc
        if self.mode == "PERMISSIVE":
            yield _row(path, member, size, crc, None, error_text(exc), data, self.content)

    def zip_archive(
        self, zf: zipfile.ZipFile, path: str, prefix: str | None, start: int, stop: int | None
    ) -> Iterator[tuple[Any, ...]]:
        for m in list_members(zf)[start:stop]:
            yield from self.zip_member(zf, m, path, prefix)

    def zip_member(
        self, zf: zipfile.ZipFile, m: MemberInfo, path: str, prefix: str | None
    ) -> Iterator[tuple[Any, ...]]:
        name = m.name if prefix is None else f"{prefix}!{m.name}"
        where = location(path, name)
        try:
            stream: IO[bytes] = zf.open(m.info)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, ValueError) as exc:
            self.stats.members += 1
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
        self.stats.members += 1
        data: bytes | None = None
        try:
            if self.content or crc is None:
                data = read_bounded(stream, size, where)
                if len(data) < size:
                    raise CorruptZipError(f"{where}: member ends after {len(data)} of {size} bytes")
                if crc is None:
                    crc = zlib.crc32(data)
                head = data[:_HEAD]
            else:
                head = stream.read(min(size, _HEAD))
            if (name is not None and looks_like_zip_name(name)) or head[:4] == _NESTED_MAGIC:
                self.stats.members -= 1  # a nested zip is a container: its members count instead
                yield from self.nested(stream, data, head, path, name, size, crc, where)
                return
            if is_plainly_not_dicom(name if name is not None else path, head):
                self.stats.skipped += 1
                self.stats.skipped_names.append(name if name is not None else path)
                return
            if data is not None:
                view = io.BytesIO(data)
                view.seek(len(head))
                fetch: Callable[[int], bytes] = view.read
            else:
                fetch = stream.read
            header = parse_header(fetch, size, where, head=head, cache=self.cache)
        except MemberError as exc:
            yield from self.error(exc, path, name, size, crc, data)
            return
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            yield from self.error(
                CorruptZipError(f"{where}: cannot inflate member: {exc}"), path, name, size, crc
            )
            return
        self.stats.parsed += 1
        yield _row(path, name, size, crc, header, None, data, self.content)

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
            self.stats.members += 1
            yield from self.error(exc, path, name, size, crc)
            return
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            self.stats.members += 1
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
    *,
    content: bool = False,
    mode: Mode = "PERMISSIVE",
    cache: JsonEncoderCache | None = None,
    stats: ScanStats | None = None,
) -> Iterator[tuple[Any, ...]]:
    """Yield ``zipdcm`` rows for one unit; see the module docstring for the guarantees."""
    scanner = _Scanner(
        content, mode, cache if cache is not None else JsonEncoderCache(), stats or ScanStats()
    )
    if unit.kind == "file":
        try:
            fh = open(unit.path, "rb")  # noqa: SIM115 - closed below
            size = fh.seek(0, io.SEEK_END)
            fh.seek(0)
        except OSError as exc:
            scanner.stats.members += 1
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
        scanner.stats.members += 1
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
