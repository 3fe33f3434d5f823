"""Read gzip-compressed members (``x.dcm.gz``, or any member starting with gzip magic).

Archives from PACS exports and download tools sometimes hold each DICOM file
gzipped. A member is gzip when its first bytes are the gzip magic with the
deflate method (:func:`is_gzip`); its *content* is then the inflated bytes,
recognised and parsed as if the member were named without ``.gz``
(:func:`content_name`), while the member keeps the name it is stored under.

Inflating is bounded: a gzip bomb (a few KiB that inflate to gigabytes) fails
with :class:`~iac_spark.errors.MemberTooLargeError` as soon as the output passes
``max_bytes``, never holding more than that plus one read. Corrupt or cut gzip
data fails with :class:`CorruptGzipError`. Both name ``where`` (file + member).

Example:
    >>> import gzip, io
    >>> blob = gzip.compress(b"DICOM bytes", mtime=0)
    >>> is_gzip(blob[:3]), content_name("s1/IM0001.dcm.gz")
    (True, 's1/IM0001.dcm')
    >>> read_gzip_member(io.BytesIO(blob), where="/d/a.zip!IM0001.dcm.gz", max_bytes=1024)
    b'DICOM bytes'
    >>> read_gzip_member(io.BytesIO(gzip.compress(bytes(5000))), where="/d/a.zip!bomb.gz", max_bytes=1024)
    Traceback (most recent call last):
    ...
    iac_spark.errors.MemberTooLargeError: /d/a.zip!bomb.gz: gzip member inflates past the limit of 1024 bytes
"""

from __future__ import annotations

import gzip
import io
import zlib
from typing import IO, Any

from ..errors import CorruptZipError, MemberTooLargeError

__all__ = [
    "GZIP_MAGIC",
    "CorruptGzipError",
    "content_name",
    "gzip_size_crc",
    "is_gzip",
    "open_gzip_member",
    "read_gzip_member",
]

#: ID1 ID2 CM of RFC 1952: gzip, deflate.
GZIP_MAGIC = b"\x1f\x8b\x08"


class CorruptGzipError(CorruptZipError):
    """A gzip member's data is corrupt or cut short (bad header, bad deflate data, CRC-32 or
    length mismatch in its trailer). Re-create the member; the archive's others are unaffected."""


def is_gzip(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a member, at least 3) starts a gzip stream.

    >>> is_gzip(b"\\x1f\\x8b\\x08\\x00"), is_gzip(b"PK\\x03\\x04"), is_gzip(b"\\x1f")
    (True, False, False)
    """
    return head[:3] == GZIP_MAGIC


def content_name(name: str) -> str:
    """The name a gzip member's content is recognised by: one trailing ``.gz`` dropped.

    Only for recognising the content (suffix rules such as ``.txt`` = not DICOM): rows
    keep the stored member name.

    >>> content_name("a.zip!s/x.dcm.GZ"), content_name("x.dcm"), content_name(".gz")
    ('a.zip!s/x.dcm', 'x.dcm', '.gz')
    """
    last = name.rsplit("!", 1)[-1].rsplit("/", 1)[-1]
    if len(last) > 3 and last.lower().endswith(".gz"):
        return name[:-3]
    return name


class _BoundedGzip(io.RawIOBase):
    """Inflated bytes of a gzip stream, failing once they pass ``max_bytes``."""

    def __init__(self, stream: IO[bytes], where: str, max_bytes: int) -> None:
        super().__init__()
        self._gz = gzip.GzipFile(fileobj=stream, mode="rb")
        self._where = where
        self._max = max_bytes
        self._out = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        want = min(len(b), self._max - self._out + 1)
        try:
            data = self._gz.read(want)
        except EOFError as exc:
            raise CorruptGzipError(
                f"{self._where}: gzip data is cut short after {self._out} inflated bytes"
            ) from exc
        except (gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise CorruptGzipError(f"{self._where}: gzip data is corrupt: {exc}") from exc
        self._out += len(data)
        if self._out > self._max:
            raise MemberTooLargeError(
                f"{self._where}: gzip member inflates past the limit of {self._max} bytes"
            )
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._gz.close()  # leaves the underlying stream open
        super().close()


def open_gzip_member(stream: IO[bytes], *, where: str, max_bytes: int) -> io.BufferedReader:
    """A stream of the inflated content of the gzip data read from ``stream``.

    Reads raise :class:`~iac_spark.errors.MemberTooLargeError` once more than ``max_bytes``
    came out, and :class:`CorruptGzipError` on corrupt data, a CRC-32 / length mismatch
    or a cut stream. Concatenated gzip streams read as one (RFC 1952). Closing it leaves
    ``stream`` open. The inflated size is unknown until the end: callers that need it
    (rows carry ``size``) read the content whole with :func:`read_gzip_member`.
    """
    return io.BufferedReader(_BoundedGzip(stream, where, max_bytes), buffer_size=1 << 16)


def gzip_size_crc(stream: IO[bytes], *, where: str, max_bytes: int) -> tuple[int, int]:
    """(size, CRC-32) of the inflated content, inflating 1 MiB at a time with the output
    discarded: what a metadata scan needs of a gzip member without holding its content.

    >>> gzip_size_crc(io.BytesIO(gzip.compress(b"abc")), where="x.gz", max_bytes=10)
    (3, 891568578)
    """
    size = crc = 0
    with open_gzip_member(stream, where=where, max_bytes=max_bytes) as fh:
        while chunk := fh.read(1 << 20):
            size += len(chunk)
            crc = zlib.crc32(chunk, crc)
    return size, crc


def read_gzip_member(stream: IO[bytes], *, where: str, max_bytes: int) -> bytes:
    """The whole inflated content, at most ``max_bytes`` (see :func:`open_gzip_member`)."""
    with open_gzip_member(stream, where=where, max_bytes=max_bytes) as fh:
        return fh.read()
