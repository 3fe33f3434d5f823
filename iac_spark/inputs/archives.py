"""Open zip archives and their members without extracting anything to disk.

A *member* is addressed by the archive path plus its position in the central
directory (names can repeat inside one zip, positions cannot). Names stored
without the UTF-8 flag are decoded by :func:`decode_member_name` (UTF-8, then
GB18030 for Chinese archives made on Windows, then cp437), so they read as the
user wrote them. Nested zips are opened in memory and chained with ``!``.

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
from dataclasses import dataclass
from typing import IO

from ..errors import MemberTooLargeError

__all__ = [
    "MAX_IN_MEMORY_BYTES",
    "MemberInfo",
    "decode_member_name",
    "list_members",
    "looks_like_zip_name",
    "read_bounded",
]

#: Largest member (or nested zip) read whole into memory. Spark binary cells top out at 2 GiB.
MAX_IN_MEMORY_BYTES = 2 * 1024**3 - 1

_UTF8_FLAG = 0x800


@dataclass(frozen=True)
class MemberInfo:
    """One file entry of a zip central directory.

    ``name`` is the decoded, de-duplicated member name (a repeated name gets a
    ``#2``, ``#3``... suffix so that (path, member) stays unique); ``index`` is the
    entry's position, the stable way to reopen it.
    """

    index: int
    name: str
    size: int
    compress_size: int
    crc32: int
    info: zipfile.ZipInfo


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
    if raw.isascii():
        return name
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return name


def looks_like_zip_name(name: str) -> bool:
    """True when a member name ends in ``.zip`` (case-insensitive)."""
    return name.lower().endswith(".zip")


def list_members(zf: zipfile.ZipFile) -> list[MemberInfo]:
    """File entries (directories left out) with decoded, unique names, in directory order."""
    seen: dict[str, int] = {}
    out: list[MemberInfo] = []
    for index, info in enumerate(zf.infolist()):
        if info.is_dir():
            continue
        name = decode_member_name(info)
        count = seen.get(name, 0) + 1
        seen[name] = count
        if count > 1:
            name = f"{name}#{count}"
        out.append(MemberInfo(index, name, info.file_size, info.compress_size, info.CRC, info))
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
