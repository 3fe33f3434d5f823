"""Open zip archives and their members without extracting anything to disk.

A *member* is addressed by the archive path plus its position in the central
directory (names can repeat inside one zip, positions cannot). Names stored
without the UTF-8 flag are decoded by :func:`decode_member_name` (UTF-8, then
GB18030 for Chinese archives made on Windows, then cp437), so they read as the
user wrote them. Nested zips are opened in memory and chained with ``!``.

:func:`list_members` lists a :class:`zipfile.ZipFile`; the scan, the survey and the
pack tasks list archives through :mod:`iac_spark.inputs.archive` instead (a lean
directory reader, and salvage for zips without one), which names members by the same
rules (:func:`decode_raw_name`, :func:`unique_name`).

Example:
    >>> import io, zipfile
    >>> buf = io.BytesIO()
    >>> with zipfile.ZipFile(buf, "w") as zf:
    ...     zf.writestr("a/x.dcm", b"hello")
    >>> [m.name for m in list_members(zipfile.ZipFile(buf))]
    ['a/x.dcm']
"""

from __future__ import annotations

import posixpath
import zipfile
from dataclasses import dataclass, field
from typing import IO

from ..errors import MemberTooLargeError

__all__ = [
    "MAX_IN_MEMORY_BYTES",
    "MemberInfo",
    "decode_member_name",
    "decode_raw_name",
    "list_members",
    "looks_like_zip_name",
    "read_bounded",
    "unique_name",
]

#: Largest member (or nested zip) read whole into memory. Spark binary cells top out at 2 GiB.
MAX_IN_MEMORY_BYTES = 2 * 1024**3 - 1

_UTF8_FLAG = 0x800


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One file entry of a zip central directory.

    ``name`` is the decoded, de-duplicated member name (a repeated name gets a
    ``#2``, ``#3``... suffix so that (path, member) stays unique); ``index`` is the
    entry's position, the stable way to reopen it. ``flags`` (general-purpose bits:
    0 encrypted, 3 data descriptor, 11 UTF-8), ``method`` (0 stored, 8 deflate...) and
    ``header_offset`` (of the local header, prepended bytes accounted for) are what a
    reader needs to open the member without :mod:`zipfile`; ``info`` is the
    :class:`zipfile.ZipInfo` when the entry came from :func:`list_members` (None from
    the lean directory reader of :mod:`iac_spark.inputs.archive`).
    """

    index: int
    name: str
    size: int
    compress_size: int
    crc32: int
    info: zipfile.ZipInfo | None = field(default=None, compare=False, repr=False)
    flags: int = 0
    method: int = 0
    header_offset: int = 0

    @property
    def encrypted(self) -> bool:
        """Flag bit 0: the member is encrypted (never decrypted here)."""
        return bool(self.flags & 0x1)

    @property
    def compress_type(self) -> int:
        """The compression method, as :class:`zipfile.ZipInfo` names it."""
        return self.method


def decode_member_name(info: zipfile.ZipInfo) -> str:
    """The member name as its author meant it.

    Zip names without the UTF-8 flag are officially cp437, but archives made on
    Chinese Windows store GBK and many tools store UTF-8 without setting the flag.
    Python decodes them as cp437 mojibake; we recover the raw bytes and try UTF-8,
    then GB18030 (a superset of GBK), and keep cp437 only if both fail.

    >>> zi = zipfile.ZipInfo("\u5f20\u4e09/1.dcm".encode("gbk").decode("cp437"))
    >>> decode_member_name(zi)
    '张三/1.dcm'
    """
    name = info.filename
    if info.flag_bits & _UTF8_FLAG:
        return name
    try:
        raw = name.encode("cp437")
    except UnicodeEncodeError:
        return name
    return _unflagged(raw, name)


def decode_raw_name(raw: bytes, flags: int) -> str:
    """The name stored as ``raw`` bytes with general-purpose ``flags``, decoded exactly as
    :func:`decode_member_name` decodes :mod:`zipfile`'s reading of it: UTF-8 when flag
    bit 11 says so (undecodable bytes replaced), else UTF-8 / GB18030 / cp437; cut at the
    first NUL, as :mod:`zipfile` cuts it.

    >>> decode_raw_name("李四/检查.dcm".encode("gbk"), 0), decode_raw_name(b"nul\\x00.dcm", 0)
    ('李四/检查.dcm', 'nul')
    """
    if flags & _UTF8_FLAG:
        name = raw.decode("utf-8", "replace")
        nul = name.find("\x00")
        return name if nul < 0 else name[:nul]
    nul = raw.find(b"\x00")
    if nul >= 0:
        raw = raw[:nul]
    if raw.isascii():
        return raw.decode("ascii")
    return _unflagged(raw, raw.decode("cp437"))


def _unflagged(raw: bytes, cp437: str) -> str:
    if raw.isascii():
        return cp437
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return cp437


def unique_name(seen: dict[str, int], name: str) -> str:
    """``name``, or ``name#n`` for its n-th occurrence in one archive (counted in ``seen``).

    >>> seen: dict[str, int] = {}
    >>> [unique_name(seen, n) for n in ("a.dcm", "b.dcm", "a.dcm")]
    ['a.dcm', 'b.dcm', 'a.dcm#2']
    """
    count = seen.get(name, 0) + 1
    seen[name] = count
    return name if count == 1 else f"{name}#{count}"


def looks_like_zip_name(name: str) -> bool:
    """True when a member name ends in ``.zip`` (case-insensitive)."""
    return name.lower().endswith(".zip")


def list_members(zf: zipfile.ZipFile) -> list[MemberInfo]:
    """File entries (directories left out) with decoded, unique names, in directory order.

    A directory is an entry whose name ends in ``/`` (``ZipInfo.is_dir()`` raises
    ``IndexError`` on the empty name a stored name starting with NUL reads as).
    """
    seen: dict[str, int] = {}
    out: list[MemberInfo] = []
    for index, info in enumerate(zf.infolist()):
        if info.filename.endswith("/"):
            continue
        name = unique_name(seen, decode_member_name(info))
        member = MemberInfo(
            index, name, info.file_size, info.compress_size, info.CRC, info,
            info.flag_bits, info.compress_type, info.header_offset,
        )  # fmt: skip
        out.append(member)
    return out


def read_bounded(
    stream: IO[bytes], declared: int, where: str, limit: int = MAX_IN_MEMORY_BYTES
) -> bytes:
    """Read a whole member, refusing to hold more than ``limit`` or more than it declared.

    A zip bomb that inflates past its declared size is cut off after one extra byte.

    >>> import io
    >>> read_bounded(io.BytesIO(b"abc"), 3, "x")
    b'abc'
    """
    if declared > limit:
        raise MemberTooLargeError(
            f"{where}: member is {declared} bytes, above the in-memory limit of {limit} bytes"
        )
    data = stream.read(declared + 1)
    if len(data) > declared:
        raise MemberTooLargeError(
            f"{where}: member inflates past its declared size of {declared} bytes"
        )
    return data


def join_member(prefix: str | None, name: str) -> str:
    """Chain nested member names with ``!``.

    >>> join_member("outer/inner.zip", "x.dcm"), join_member(None, "x.dcm")
    ('outer/inner.zip!x.dcm', 'x.dcm')
    """
    return name if prefix is None else f"{prefix}!{name}"


def suffix(name: str) -> str:
    """Lower-case suffix of the last path component (``''`` when none)."""
    return posixpath.splitext(name.rsplit("!", 1)[-1])[1].lower()
