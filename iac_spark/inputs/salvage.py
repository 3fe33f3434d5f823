"""Read a zip whose central directory is missing or broken, by walking its local headers.

A download cut short loses the central directory at the end of the zip, and
:mod:`zipfile` then refuses the whole archive. Every member is also described by
a *local file header* in front of its data, so the members that did arrive can
still be read: :func:`salvage_members` walks those headers from offset 0 and
yields one :class:`SalvagedMember` per complete file entry, then at most one
:class:`SalvageError` where the walk had to stop (the member that is cut short,
or bytes that are no zip header). Nothing after a :class:`SalvageError` is read:
past a cut nothing can be trusted.

* Stored and deflated members are read; other methods are listed and fail on open.
* Data descriptors (flag bit 3: sizes written *after* the data, as a zip written
  to a pipe has them): the end of a deflated member is found by inflating it
  (output discarded, at most ``max_member_bytes``), the end of a stored one by
  finding a descriptor whose compressed size, size and CRC-32 match the bytes
  before it.
* ZIP64 extra fields (sizes past 4 GiB, or forced) and ZIP64 descriptors.
* Names decode exactly as :func:`~iac_spark.inputs.archives.list_members` decodes
  them (UTF-8 flag, else UTF-8 / GB18030 / cp437), with the same ``#2`` suffix for
  a repeated name; ``raw_name`` keeps the stored bytes.
* Encrypted members (flag bit 0) are listed and :func:`open_member` raises
  :class:`EncryptedMemberError`: nothing here ever tries a password.

:func:`open_member` returns a stream that checks the member against its declared
size (inflating past it is a zip bomb: :class:`~iac_spark.errors.MemberTooLargeError`)
and its CRC-32 at the end; :func:`read_member` reads it whole under a bound.
:func:`has_central_directory` tells cheaply whether :mod:`zipfile` can open a file.

Example:
    >>> import io, zipfile
    >>> buf = io.BytesIO()
    >>> with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
    ...     zf.writestr("a/1.dcm", b"first" * 100)
    ...     zf.writestr("a/2.dcm", b"second" * 100)
    >>> cut = io.BytesIO(buf.getvalue()[:90])  # inside a/2.dcm: no central directory
    >>> has_central_directory(cut)
    False
    >>> for item in salvage_members(cut, where="/d/x.zip", max_member_bytes=1 << 20):
    ...     if isinstance(item, SalvagedMember):
    ...         print(item.name, read_member(cut, item, where="/d/x.zip!" + item.name, max_bytes=1 << 20)[:10])
    ...     else:
    ...         print(item.name, type(item.error).__name__)
    a/1.dcm b'firstfirst'
    a/2.dcm TruncatedArchiveError
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from ..errors import CorruptZipError, MemberError, MemberTooLargeError, location
from .archives import decode_member_name, read_bounded

__all__ = [
    "MAX_DECLARED_SIZE",
    "CentralDirectory",
    "EncryptedMemberError",
    "SalvageError",
    "SalvagedMember",
    "TruncatedArchiveError",
    "has_central_directory",
    "locate_central_directory",
    "open_data",
    "open_member",
    "read_member",
    "salvage_members",
]

_LOCAL = b"PK\x03\x04"
_CENTRAL = b"PK\x01\x02"
_EOCD = b"PK\x05\x06"
_EOCD64 = b"PK\x06\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_DESCRIPTOR = b"PK\x07\x08"
_SPAN_MARKERS = (b"PK\x07\x08", b"PK00")  # first 4 bytes of a split / spanned archive
#: Signatures that may follow a member's data: where the walk ends without an error.
_DIRECTORY_SIGNATURES = (_CENTRAL, _EOCD, _EOCD64, _EOCD64_LOCATOR, b"PK\x05\x05", b"PK\x06\x08")
_NEXT_SIGNATURES = (_LOCAL, *_DIRECTORY_SIGNATURES)

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes
_EOCD_RECORD = struct.Struct("<4sHHHHIIH")  # 22 bytes
_EOCD64_LOCATOR_RECORD = struct.Struct("<4sIQI")  # 20 bytes
_EOCD64_RECORD = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes
_MAX_TAIL = 65535 + _EOCD_RECORD.size

_FLAG_ENCRYPTED = 0x1
_FLAG_DESCRIPTOR = 0x8
_FLAG_UTF8 = 0x800
_ZIP64_TAG = 0x0001
_U32_MAX = 0xFFFFFFFF
#: The largest size or offset a zip may declare here (a signed 64-bit value: the scan's
#: columns are int64, and no file is larger).
MAX_DECLARED_SIZE = (1 << 63) - 1
_CHUNK = 1 << 20
_BUFFER = 256  # a member stream's buffer: reads go to the member at the size asked for
_AHEAD = 1024  # bytes read at each header: the fixed part, and the name and extra field mostly


class TruncatedArchiveError(CorruptZipError):
    """A zip ends inside a member: its header, data or data descriptor is incomplete.

    Raised (as a :class:`SalvageError`) when a zip without its central directory is
    salvaged and the file stops before the member does, which is what a download cut
    short looks like. The members before it were recovered; nothing after it can be
    read. Download the archive again to get the rest.
    """


class EncryptedMemberError(MemberError):
    """A member is encrypted (general-purpose flag bit 0) and is never decrypted here.

    iac_spark does not take passwords. Decrypt the archive with the tool that made it
    and ingest the decrypted copy; the archive's other members are unaffected.
    """


@dataclass(frozen=True)
class SalvagedMember:
    """One complete file entry found by walking the local headers.

    The first six fields match :class:`~iac_spark.inputs.archives.MemberInfo`, so code
    that reads ``name`` / ``size`` / ``crc32`` of a member works on both. ``index`` is
    the entry's position among the local headers (directories counted, like the
    central directory positions of ``list_members``); ``info`` is a
    :class:`zipfile.ZipInfo` built from the local header (its ``header_offset``,
    ``flag_bits``, sizes and CRC are the salvaged ones). ``data_offset`` is where the
    member's compressed bytes begin; ``descriptor`` tells whether the sizes and CRC
    came from a data descriptor (flag bit 3) rather than the local header.
    """

    index: int
    name: str
    size: int
    compress_size: int
    crc32: int
    info: zipfile.ZipInfo = field(compare=False, repr=False)
    raw_name: bytes
    data_offset: int
    descriptor: bool

    @property
    def compress_type(self) -> int:
        """The compression method (``zipfile.ZIP_STORED``, ``zipfile.ZIP_DEFLATED``, ...)."""
        return self.info.compress_type

    @property
    def header_offset(self) -> int:
        """Offset of the member's local header in the archive."""
        return self.info.header_offset

    @property
    def encrypted(self) -> bool:
        """Flag bit 0: the member is encrypted (:func:`open_member` refuses it)."""
        return bool(self.info.flag_bits & _FLAG_ENCRYPTED)


@dataclass(frozen=True)
class SalvageError:
    """Where the walk stopped, and why; nothing after it was read.

    ``name`` is the decoded name of the member concerned (``None`` when no header
    could be read to name it: then the archive itself is in error from ``offset``
    on); ``index`` is the entry position it would have had. ``error`` is the
    exception to raise or render with :func:`~iac_spark.errors.error_text`; its
    message names the file, the member and what was found.
    """

    index: int
    offset: int
    name: str | None
    error: MemberError


# ---------------------------------------------------------------------------- central directory
@dataclass(frozen=True)
class CentralDirectory:
    """Where an archive's central directory is: ``entries`` as its end record counts them,
    ``offset`` of its first entry and ``size`` in bytes (absolute, in the file), and
    ``concat``: bytes prepended to the archive (a self-extractor stub), to add to every
    local header offset the directory records (as :mod:`zipfile` does)."""

    entries: int
    offset: int
    size: int
    concat: int = 0


def has_central_directory(fh: IO[bytes]) -> bool:
    """True when the end of ``fh`` holds an end-of-central-directory record that points at a
    central directory; cheap (see :func:`locate_central_directory`).

    False means :mod:`zipfile` cannot list the archive and :func:`salvage_members` should.

    >>> import io, zipfile
    >>> buf = io.BytesIO()
    >>> zipfile.ZipFile(buf, "w").close()
    >>> has_central_directory(buf), has_central_directory(io.BytesIO(b"PK\\x03\\x04junk"))
    (True, False)
    """
    return locate_central_directory(fh) is not None


def locate_central_directory(fh: IO[bytes]) -> CentralDirectory | None:
    """The central directory of the archive ``fh``, or None when it has none.

    Reads the last 22 bytes (the end record of an archive without a comment) and, only
    if they are not that, the last 64 KiB + 22 bytes; then a few headers. A record that
    belongs to a *stored nested zip* near the end of a cut archive is not taken for the
    archive's own: its directory must end where the record starts, or the archive must
    begin with something other than a local header (self-extracting stub).
    """
    size = fh.seek(0, io.SEEK_END)
    if size < _EOCD_RECORD.size:
        return None
    first = _read_at(fh, 0, 4)
    starts_local = first == _LOCAL
    last = _read_at(fh, size - _EOCD_RECORD.size, _EOCD_RECORD.size)
    if last.startswith(_EOCD):  # the usual case: no archive comment
        found = _eocd_is_ours(fh, last, 0, size - _EOCD_RECORD.size, size, starts_local)
        if found is not None:
            return found
    tail_start = max(0, size - _MAX_TAIL)
    tail = _read_at(fh, tail_start, size - tail_start)
    p = tail.rfind(_EOCD)
    while p >= 0:
        found = _eocd_is_ours(fh, tail, p, tail_start, size, starts_local)
        if found is not None:
            return found
        p = tail.rfind(_EOCD, 0, p)
    return None


def _eocd_is_ours(
    fh: IO[bytes], tail: bytes, p: int, tail_start: int, size: int, starts_local: bool
) -> CentralDirectory | None:
    rec = tail[p : p + _EOCD_RECORD.size]
    if len(rec) < _EOCD_RECORD.size:
        return None
    _, _, _, _, entries, cd_size, cd_offset, _ = _EOCD_RECORD.unpack(rec)
    at = tail_start + p
    if cd_size == _U32_MAX or cd_offset == _U32_MAX or entries == 0xFFFF:
        if at < _EOCD64_LOCATOR_RECORD.size:
            return None
        loc = _read_at(fh, at - _EOCD64_LOCATOR_RECORD.size, _EOCD64_LOCATOR_RECORD.size)
        if not loc.startswith(_EOCD64_LOCATOR):
            return None
        at = at - _EOCD64_LOCATOR_RECORD.size - _EOCD64_RECORD.size
        rec64 = _read_at(fh, at, _EOCD64_RECORD.size) if at >= 0 else b""
        if len(rec64) < _EOCD64_RECORD.size or not rec64.startswith(_EOCD64):
            return None
        *_, entries, cd_size, cd_offset = _EOCD64_RECORD.unpack(rec64)
    start = at - cd_size
    if start < 0:
        return None
    if cd_offset + cd_size != at and starts_local:
        return None  # a nested zip's record, or offsets that do not add up
    if start < cd_offset:
        return None  # bytes missing from the front: no offset in the directory is right
    directory = CentralDirectory(entries, start, cd_size, start - cd_offset)
    if entries == 0 and cd_size == 0:
        return directory
    return directory if _read_at(fh, start, 4) == _CENTRAL else None


# ---------------------------------------------------------------------------- the walk
def salvage_members(
    fh: IO[bytes], *, where: str, max_member_bytes: int
) -> Iterator[SalvagedMember | SalvageError]:
    """Walk the local file headers of a seekable zip from offset 0.

    Yields a :class:`SalvagedMember` per complete file entry (directories are counted
    in ``index`` but not yielded), in archive order, and at most one
    :class:`SalvageError`, last: the member cut short (:class:`TruncatedArchiveError`
    naming it and how many of its bytes are there), bytes that are no zip header, or a
    data-descriptor member whose end cannot be found within ``max_member_bytes``.
    A file that ends cleanly after a member, with no central directory at all, also
    ends in a :class:`TruncatedArchiveError` (named ``None``): later members, if there
    were any, are lost, and the caller should say so. The walk ends silently where the
    central directory begins (every member is before it).

    ``where`` (the archive path) goes into every message. Memory stays bounded: names
    and extra fields are at most 64 KiB, data is read in 1 MiB chunks and inflated
    output is discarded. ``fh`` must be seekable; each read seeks first, so members
    may be opened with :func:`open_member` on the same handle between steps.
    """
    size = fh.seek(0, io.SEEK_END)
    pos = 0
    index = 0
    seen: dict[str, int] = {}
    while True:
        if pos >= size:
            if index == 0:
                yield SalvageError(0, 0, None, CorruptZipError(f"{where}: empty file, not a zip"))
            else:
                yield SalvageError(
                    index,
                    pos,
                    None,
                    TruncatedArchiveError(
                        f"{where}: archive ends at byte {pos} after {index} entries, without its "
                        "central directory: the file was cut short; members after them, if any, "
                        "are lost"
                    ),
                )
            return
        ahead = _read_at(fh, pos, _AHEAD)
        sig = ahead[:4]
        if sig in _DIRECTORY_SIGNATURES:
            return
        if pos == 0 and sig in _SPAN_MARKERS:
            pos = 4
            continue
        if sig != _LOCAL:
            if len(sig) < 4 and _LOCAL.startswith(sig):
                yield _cut(where, index, pos, None, f"its header is cut after {len(sig)} bytes")
            elif pos == 0:
                yield SalvageError(
                    0,
                    0,
                    None,
                    CorruptZipError(f"{where}: not a zip archive (no local header at 0)"),
                )
            else:
                yield SalvageError(
                    index,
                    pos,
                    None,
                    CorruptZipError(
                        f"{where}: no zip header at byte {pos} after {index} entries "
                        f"(found {sig!r}): the rest of the archive is unreadable"
                    ),
                )
            return
        step = _member_at(fh, ahead, pos, size, index, where, max_member_bytes, seen)
        if isinstance(step, SalvageError):
            yield step
            return
        member, pos = step
        if member is not None:
            yield member
        index += 1


def _unique(seen: dict[str, int], name: str, *, commit: bool) -> str:
    """``name``, or ``name#n`` for its n-th occurrence (the rule of ``list_members``)."""
    count = seen.get(name, 0) + 1
    if commit:
        seen[name] = count
    return name if count == 1 else f"{name}#{count}"


def _member_at(
    fh: IO[bytes],
    ahead: bytes,
    pos: int,
    size: int,
    index: int,
    where: str,
    limit: int,
    seen: dict[str, int],
) -> tuple[SalvagedMember | None, int] | SalvageError:
    """The entry whose local header is at ``pos`` (None for a directory) and where it ends;
    ``ahead`` holds the bytes from ``pos`` on (at most :data:`_AHEAD`)."""
    if len(ahead) < _LOCAL_HEADER.size:
        return _cut(where, index, pos, None, f"its header is cut after {len(ahead)} bytes")
    _, _, flags, method, mtime, mdate, crc, csize, usize, n_name, n_extra = (
        _LOCAL_HEADER.unpack_from(ahead)
    )
    if n_name == 0:  # no zip tool writes an entry without a name: this is not a header
        what = "not a zip archive" if pos == 0 else f"no zip header at byte {pos}"
        return SalvageError(
            index,
            pos,
            None,
            CorruptZipError(
                f"{where}: {what} (a local header signature with an empty name follows)"
                + ("" if pos == 0 else f" after {index} entries: the rest is unreadable")
            ),
        )
    head_end = _LOCAL_HEADER.size + n_name + n_extra
    if len(ahead) < head_end and len(ahead) == _AHEAD:
        ahead = _read_at(fh, pos, head_end)  # a long name or extra field
    raw_name = ahead[_LOCAL_HEADER.size : _LOCAL_HEADER.size + n_name]
    extra = ahead[_LOCAL_HEADER.size + n_name : head_end]
    if len(raw_name) < n_name or len(extra) < n_extra:
        return _cut(where, index, pos, None, "its header is cut inside the name or extra field")
    info = _zipinfo(raw_name, flags, method, mtime, mdate, extra, pos)
    name = _unique(seen, decode_member_name(info), commit=False)
    member_where = location(where, name)
    data_offset = pos + _LOCAL_HEADER.size + n_name + n_extra
    zip64 = _zip64_sizes(extra, usize, csize)
    descriptor = bool(flags & _FLAG_DESCRIPTOR)
    if not descriptor:
        if zip64 is not None:
            usize, csize = zip64
        elif _U32_MAX in (usize, csize):
            return SalvageError(
                index,
                pos,
                name,
                CorruptZipError(f"{member_where}: size 0xFFFFFFFF without a ZIP64 extra field"),
            )
        end = data_offset + csize
        if end > size:
            return _cut(
                where,
                index,
                pos,
                name,
                f"only {max(0, size - data_offset)} of its {csize} compressed bytes are there",
            )
    else:
        found = _find_end(fh, data_offset, size, method, flags, zip64 is not None, limit)
        if isinstance(found, str):
            present = max(0, size - data_offset)
            return _stop(found, where, member_where, index, pos, name, present, limit)
        crc, csize, usize, end = found
    if max(usize, csize) > MAX_DECLARED_SIZE:  # a ZIP64 field or descriptor out of range
        return SalvageError(
            index,
            pos,
            name,
            CorruptZipError(
                f"{member_where}: declared size {max(usize, csize)} is beyond any file's size"
            ),
        )
    info.CRC, info.compress_size, info.file_size = crc, csize, usize
    if info.filename.endswith("/"):  # ZipInfo.is_dir() fails on an empty name
        return None, end
    name = _unique(seen, decode_member_name(info), commit=True)
    return (
        SalvagedMember(index, name, usize, csize, crc, info, raw_name, data_offset, descriptor),
        end,
    )


def _zipinfo(
    raw_name: bytes, flags: int, method: int, mtime: int, mdate: int, extra: bytes, pos: int
) -> zipfile.ZipInfo:
    """A ZipInfo built the way :mod:`zipfile` builds one from a central directory entry."""
    text = raw_name.decode("utf-8", "replace") if flags & _FLAG_UTF8 else raw_name.decode("cp437")
    date_time = (
        (mdate >> 9) + 1980,
        (mdate >> 5) & 0xF,
        mdate & 0x1F,
        mtime >> 11,
        (mtime >> 5) & 0x3F,
        (mtime & 0x1F) * 2,
    )
    info = zipfile.ZipInfo(text, date_time)  # also cuts the name at a NUL, as zipfile does
    info.flag_bits = flags
    info.compress_type = method
    info.extra = extra
    info.header_offset = pos
    return info


def _zip64_sizes(extra: bytes, usize: int, csize: int) -> tuple[int, int] | None:
    """(size, compressed size) with a local header's ZIP64 extra field applied; None without one.

    A local header's ZIP64 field holds both sizes (size first); a value from it replaces
    the header's only where the header says 0xFFFFFFFF.
    """
    i = 0
    while i + 4 <= len(extra):
        tag, n = struct.unpack_from("<HH", extra, i)
        body = extra[i + 4 : i + 4 + n]
        if tag == _ZIP64_TAG:
            values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            if len(values) >= 2:
                return (
                    values[0] if usize == _U32_MAX else usize,
                    values[1] if csize == _U32_MAX else csize,
                )
            if len(values) == 1 and usize == _U32_MAX:
                return values[0], csize
            if len(values) == 1:
                return usize, values[0] if csize == _U32_MAX else csize
            return usize, csize
        i += 4 + n
    return None


_Found = tuple[int, int, int, int]  # crc, compressed size, size, end of the descriptor
_Lost = Literal["eof", "cut-descriptor", "limit", "lost"]


def _find_end(
    fh: IO[bytes], start: int, size: int, method: int, flags: int, zip64: bool, limit: int
) -> _Found | _Lost:
    """(crc, compressed size, size, end of descriptor) of a data-descriptor member.

    Deflated: inflate to the end of the stream (output discarded, at most ``limit``
    bytes), then read the descriptor behind it. Stored (or where inflating fails):
    find a descriptor whose sizes (and, for stored data, CRC-32) match the bytes
    before it. Otherwise why not: ``"eof"`` (the file ends first), ``"cut-descriptor"``,
    ``"limit"`` (no end within ``limit`` bytes) or ``"lost"`` (corrupt, no descriptor fits).
    """
    if method == zipfile.ZIP_DEFLATED and not flags & _FLAG_ENCRYPTED:
        inflated = _inflate_to_end(fh, start, size, limit)
        if isinstance(inflated, tuple):
            length, out, crc = inflated
            desc = _descriptor_at(fh, start, length, zip64, (crc, out))
            if desc is not None:
                return desc
            return "cut-descriptor" if start + length + 16 > size else "lost"
        if inflated == "eof":
            return "eof"
        # past the limit (a bomb) or corrupt: find a descriptor that fits instead
        found = _scan_descriptor(fh, start, size, zip64, stored=False, limit=None)
        return found if isinstance(found, tuple) else inflated
    stored = method == zipfile.ZIP_STORED and not flags & _FLAG_ENCRYPTED
    return _scan_descriptor(fh, start, size, zip64, stored=stored, limit=limit if stored else None)


def _inflate_to_end(
    fh: IO[bytes], start: int, size: int, limit: int
) -> tuple[int, int, int] | Literal["eof", "limit", "lost"]:
    """(compressed length, inflated length, CRC-32) of the deflate stream at ``start``."""
    d = zlib.decompressobj(-15)
    pos = start
    out = 0
    crc = 0
    while not d.eof:
        if d.unconsumed_tail:
            src = d.unconsumed_tail
        else:  # at the end of the file zlib may still hold output back: drain it first
            src = _read_at(fh, pos, min(_CHUNK, size - pos))
            pos += len(src)
        try:
            data = d.decompress(src, _CHUNK)
        except zlib.error:
            return "lost"
        if not src and not data and not d.eof:
            return "eof"
        out += len(data)
        if out > limit:
            return "limit"
        crc = zlib.crc32(data, crc)
    consumed = pos - start - len(d.unused_data) - len(d.unconsumed_tail)
    return consumed, out, crc


def _descriptor_at(
    fh: IO[bytes], start: int, length: int, zip64: bool, actual: tuple[int, int]
) -> _Found | None:
    """The descriptor right after ``length`` compressed bytes, if one there has that length.

    Candidates: signed or unsigned, 4- or 8-byte sizes (ZIP64 first when the local header
    had a ZIP64 field). One whose CRC and size also match ``actual`` (CRC-32, size) wins;
    else one whose compressed size matches (a CRC or size mismatch then fails the member
    when it is read, not the walk).
    """
    at = start + length
    buf = _read_at(fh, at, 24)
    fits: list[_Found] = []
    for wide in (zip64, not zip64):
        for signed in (True, False):
            d = _parse_descriptor(buf, signed, wide)
            if d is not None and d[1] == length:
                fits.append((d[0], d[1], d[2], at + d[3]))
    for crc, csize, usize, end in fits:
        if (crc, usize) == actual:
            return crc, csize, usize, end
    return fits[0] if fits else None


def _parse_descriptor(buf: bytes, signed: bool, wide: bool) -> tuple[int, int, int, int] | None:
    """(crc, compressed size, size, descriptor length) read from ``buf``, None if too short."""
    off = 4 if signed else 0
    if signed and not buf.startswith(_DESCRIPTOR):
        return None
    fmt = "<IQQ" if wide else "<III"
    n = struct.calcsize(fmt)
    if len(buf) < off + n:
        return None
    crc, csize, usize = struct.unpack_from(fmt, buf, off)
    return crc, csize, usize, off + n


def _scan_descriptor(
    fh: IO[bytes], start: int, size: int, zip64: bool, *, stored: bool, limit: int | None
) -> _Found | _Lost:
    """Find the descriptor of data starting at ``start`` without inflating it.

    A candidate is a descriptor signature, or (unsigned) the 12 / 20 bytes before the next
    header signature, whose compressed size equals its distance from ``start``. Stored
    data must also match the candidate's size and CRC-32 (computed while scanning, 1 MiB
    at a time); other data must be followed by a header signature or the end of the file.
    """
    crc = 0  # CRC-32 of the bytes [start, base)
    base = start
    while True:
        if limit is not None and base - start > limit:
            return "limit"
        window = _read_at(fh, base, _CHUNK + 28)
        body = min(len(window), _CHUNK)
        for at, signed, wide in _candidates(window, body, zip64):
            d = _parse_descriptor(window[at:], signed, wide)
            length = base + at - start
            if d is None or d[1] != length:
                continue
            after = base + at + d[3]
            if stored:
                if d[2] != length or zlib.crc32(window[:at], crc) != d[0]:
                    continue
            elif not (after == size or _read_at(fh, after, 4) in _NEXT_SIGNATURES):
                continue
            return d[0], d[1], d[2], after
        if len(window) < _CHUNK + 28:
            return "eof" if stored else "lost"
        crc = zlib.crc32(window[:_CHUNK], crc)
        base += _CHUNK


def _candidates(window: bytes, body: int, zip64: bool) -> list[tuple[int, bool, bool]]:
    """(offset, signed, wide) of possible descriptors starting in ``window[:body]``, in order.

    Signed descriptors start at a descriptor signature; unsigned ones end where a local or
    central header signature starts.
    """
    found: set[tuple[int, bool, bool]] = set()
    i = window.find(_DESCRIPTOR, 0, body + 3)
    while 0 <= i < body:
        found.update(((i, True, zip64), (i, True, not zip64)))
        i = window.find(_DESCRIPTOR, i + 1, body + 3)
    for sig in (_LOCAL, _CENTRAL):
        i = window.find(sig, 12)
        while i >= 0:
            for wide in (zip64, not zip64):
                at = i - (20 if wide else 12)
                if 0 <= at < body:
                    found.add((at, False, wide))
            i = window.find(sig, i + 1)
    return sorted(found, key=lambda c: (c[0], not c[1], c[2] != zip64))


def _cut(where: str, index: int, pos: int, name: str | None, what: str) -> SalvageError:
    if index == 0 and pos == 0 and name is None:  # nothing to salvage, nothing to name
        return SalvageError(
            0,
            0,
            None,
            CorruptZipError(
                f"{where}: not a readable zip archive: it ends inside its first local header "
                f"({what}): cut short, or not a zip"
            ),
        )
    who = f"member {name!r}" if name is not None else f"entry {index + 1}"
    return SalvageError(
        index,
        pos,
        name,
        TruncatedArchiveError(
            f"{location(where, name)}: archive cut short inside {who} (header at byte {pos}): "
            f"{what}; members after it, if any, are lost"
        ),
    )


def _stop(
    why: str,
    where: str,
    member_where: str,
    index: int,
    pos: int,
    name: str,
    present: int,
    limit: int,
) -> SalvageError:
    if why == "eof":
        return _cut(where, index, pos, name, f"only {present} bytes of its data are there")
    if why == "cut-descriptor":
        return _cut(where, index, pos, name, "its data is there but its data descriptor is cut")
    if why == "limit":
        return SalvageError(
            index,
            pos,
            name,
            MemberTooLargeError(
                f"{member_where}: member has no sizes in its header and does not end within "
                f"{limit} bytes (the member size limit); the rest of the archive is unreadable"
            ),
        )
    return SalvageError(
        index,
        pos,
        name,
        CorruptZipError(
            f"{member_where}: member data is corrupt and no data descriptor fits it; "
            "the rest of the archive is unreadable"
        ),
    )


def _read_at(fh: IO[bytes], pos: int, n: int) -> bytes:
    if n <= 0:
        return b""
    fh.seek(pos)
    return fh.read(n)


# ---------------------------------------------------------------------------- reading a member
class _MemberStream(io.RawIOBase):
    """Raw bytes of one member: bounded by its declared size, CRC-checked at the end.

    A stored member's stream is also seekable (its bytes are the archive's): a reader that
    seeks has skipped bytes, so the CRC-32 is then not checked (the size still is).
    """

    def __init__(
        self,
        fh: IO[bytes],
        where: str,
        *,
        data_offset: int,
        compress_size: int,
        size: int,
        crc32: int,
        method: int,
    ) -> None:
        super().__init__()
        self._fh = fh
        self._where = where
        self._start = data_offset
        self._pos = data_offset
        self._end = data_offset + compress_size
        self._declared = size
        self._expected_crc = crc32
        self._out = 0
        self._crc = 0
        self._done = False
        self._skipped = False
        self._inflater = zlib.decompressobj(-15) if method == zipfile.ZIP_DEFLATED else None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._inflater is None

    def tell(self) -> int:
        return self._out

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if self._inflater is not None:
            raise io.UnsupportedOperation("a deflated member is read in order")
        target = {io.SEEK_SET: 0, io.SEEK_CUR: self._out, io.SEEK_END: self._declared}[whence]
        target = min(max(0, target + offset), self._declared)
        if target != self._out:
            self._skipped = True
            self._done = False
        self._out = target
        self._pos = self._start + target
        return target

    def readinto(self, b: Any) -> int:
        if self._done or len(b) == 0:
            return 0
        data = self._next(len(b))
        b[: len(data)] = data
        return len(data)

    def _next(self, n: int) -> bytes:
        if self._inflater is None:
            want = min(n, self._end - self._pos)
            if want <= 0:
                self._finish()
                return b""
            data = self._compressed(want)
            return self._emit(data)
        d = self._inflater
        while True:
            if d.eof:
                self._finish()
                return b""
            if d.unconsumed_tail:
                src = d.unconsumed_tail
            else:
                # as much compressed data as the read asks for output, 4-64 KiB: a header
                # read inflates little more than the header; with all of it in, zlib may
                # still hold output back (a read smaller than the last block): drain that
                want = min(max(n, 4096), 1 << 16, self._end - self._pos)
                src = self._compressed(want) if want > 0 else b""
            try:
                data = d.decompress(src, max(1, min(n, self._declared - self._out + 1)))
            except zlib.error as exc:
                raise CorruptZipError(f"{self._where}: cannot inflate member: {exc}") from exc
            if data:
                return self._emit(data)
            if not src and not d.eof:
                raise CorruptZipError(
                    f"{self._where}: deflate data ends before its end marker "
                    f"(after {self._out} of {self._declared} bytes)"
                )

    def _compressed(self, want: int) -> bytes:
        data = _read_at(self._fh, self._pos, want)
        if len(data) < want:
            raise TruncatedArchiveError(
                f"{self._where}: archive ends {self._end - self._pos - len(data)} bytes "
                "before the member's data does"
            )
        self._pos += len(data)
        return data

    def _emit(self, data: bytes) -> bytes:
        self._out += len(data)
        if self._out > self._declared:
            raise MemberTooLargeError(
                f"{self._where}: member inflates past its declared size of {self._declared} bytes"
            )
        self._crc = zlib.crc32(data, self._crc)
        return data

    def _finish(self) -> None:
        self._done = True
        if self._out != self._declared:
            raise CorruptZipError(
                f"{self._where}: member ends after {self._out} of its {self._declared} bytes"
            )
        if not self._skipped and self._crc != self._expected_crc:
            raise CorruptZipError(
                f"{self._where}: CRC-32 mismatch (bytes give {self._crc:#010x}, "
                f"the archive says {self._expected_crc:#010x})"
            )


def open_member(fh: IO[bytes], member: SalvagedMember, *, where: str) -> io.BufferedReader:
    """A stream of the member's bytes from the archive ``fh`` (the one it was salvaged from).

    Reads fail with :class:`~iac_spark.errors.MemberTooLargeError` as soon as the data
    inflates past the declared size (a bomb never costs more than one read's worth of
    memory), and with :class:`~iac_spark.errors.CorruptZipError` on corrupt data, an
    early end or a CRC-32 mismatch (checked when the stream reaches its end). Raises
    :class:`EncryptedMemberError` for an encrypted member, and
    :class:`~iac_spark.errors.CorruptZipError` for a compression method other than
    stored or deflate. ``where`` (file + member) goes into every message.
    """
    if member.encrypted:
        raise EncryptedMemberError(f"{where}: member is encrypted; it is not decrypted here")
    if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CorruptZipError(
            f"{where}: compression method {member.compress_type} is not supported when "
            "salvaging (only stored and deflate)"
        )
    return open_data(
        fh, where, data_offset=member.data_offset, compress_size=member.compress_size,
        size=member.size, crc32=member.crc32, method=member.compress_type,
    )  # fmt: skip


def open_data(
    fh: IO[bytes],
    where: str,
    *,
    data_offset: int,
    compress_size: int,
    size: int,
    crc32: int,
    method: int,
) -> io.BufferedReader:
    """A stream of the stored or deflated member data at ``data_offset`` of ``fh``, checked
    like :func:`open_member` checks it (the reader of archives with a central directory
    too). A stored member whose sizes differ is :class:`~iac_spark.errors.CorruptZipError`."""
    if method == zipfile.ZIP_STORED and compress_size != size:
        raise CorruptZipError(
            f"{where}: stored member holds {compress_size} bytes but declares {size}"
        )
    raw = _MemberStream(
        fh, where, data_offset=data_offset, compress_size=compress_size, size=size,
        crc32=crc32, method=method,
    )  # fmt: skip
    return io.BufferedReader(raw, buffer_size=_BUFFER)


def read_member(fh: IO[bytes], member: SalvagedMember, *, where: str, max_bytes: int) -> bytes:
    """The member's whole bytes, checked like :func:`open_member` reads them.

    A declared size above ``max_bytes`` is refused before anything is read
    (:class:`~iac_spark.errors.MemberTooLargeError`), so at most ``max_bytes`` + 1 bytes
    are ever held.
    """
    with open_member(fh, member, where=where) as stream:
        # asks for one byte more than declared: the end of the stream (the CRC check) is reached
        return read_bounded(stream, member.size, where, max_bytes)
