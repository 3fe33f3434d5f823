"""Read one member's full bytes by (path, member), as the pack tasks do.

Members are named exactly as the ``zipdcm`` scan names them (decoded names, ``#n``
suffixes for repeated names, ``!`` for nested zips): both list archives through
:func:`~iac_spark.inputs.archive.open_archive`, so a salvaged zip's members are found by
the same walk. Open archives and their name maps are cached, a few at a time, since a task
reads its members archive by archive. Gzip members are inflated, as the scan reads them.
The bytes are checked against the size and CRC-32 the scan recorded.

Example:
    >>> import io, zipfile, tempfile, os, zlib
    >>> z = os.path.join(tempfile.mkdtemp(), "a.zip")
    >>> with zipfile.ZipFile(z, "w") as zf:
    ...     zf.writestr("x.dcm", b"abc")
    >>> with MemberReader() as r:
    ...     r.read(z, "x.dcm", 3, zlib.crc32(b"abc"))
    b'abc'
"""

from __future__ import annotations

import io
import zlib
from collections import OrderedDict
from types import TracebackType

from ..errors import CorruptZipError, MemberError, location
from .archive import (
    Archive,
    Member,
    UnreadableFileError,
    deflate_bound,
    open_archive,
    read_content,
)
from .archives import MAX_IN_MEMORY_BYTES, read_bounded
from .gzipped import is_gzip, read_gzip_member
from .limits import InputLimits

__all__ = ["MemberReader"]


def _stored_bound(size: int) -> int:
    """Most stored bytes a member whose content the scan found to be ``size`` bytes may hold:
    the content itself, or its gzip (deflate's worst case plus a generous gzip header)."""
    return min(MAX_IN_MEMORY_BYTES, deflate_bound(size) + 65536)


def _content(stored: bytes, size: int, where: str) -> bytes:
    """The content the scan saw: gzip inflated (at most ``size`` bytes), else the bytes."""
    if is_gzip(stored[:3]):
        return read_gzip_member(io.BytesIO(stored), where=where, max_bytes=size)
    return stored


class _Open:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.members: dict[str, Member] = {m.name: m for m in archive.members}


class MemberReader:
    """Cached random access to members; not thread-safe (one per task).

    The scan already held every member to ``limits``; reads here are bounded by the size
    the scan recorded (a member that grew since is an error, never a bigger allocation).
    """

    def __init__(self, max_open: int = 4, *, limits: InputLimits | None = None) -> None:
        self.max_open = max_open
        self.limits = limits or InputLimits()
        self._open: OrderedDict[str, _Open] = OrderedDict()

    def _archive(self, key: str, source: str | io.BytesIO) -> _Open:
        arch = self._open.get(key)
        if arch is not None:
            self._open.move_to_end(key)
            return arch
        arch = _Open(open_archive(source, key, self.limits))
        self._open[key] = arch
        while len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            old.archive.close()
        return arch

    def read(self, path: str, member: str | None, size: int, crc32: int) -> bytes:
        """The member's bytes; :class:`MemberError` (naming file and member) if unreadable or changed."""
        where = location(path, member)
        try:
            if member is None:
                data = self._read_file(path, size, where)
            else:
                data = self._read_member(path, member, size, where)
        except MemberError:
            raise
        except (OSError, EOFError, KeyError, ValueError, RuntimeError, zlib.error) as exc:
            raise CorruptZipError(
                f"{where}: cannot read member: {type(exc).__name__}: {exc}"
            ) from exc
        actual_crc = zlib.crc32(data)
        if len(data) != size or actual_crc != crc32:
            raise CorruptZipError(
                f"{where}: bytes changed since the scan (size {len(data)} vs {size}, "
                f"crc32 {actual_crc} vs {crc32})"
            )
        return data

    def _read_file(self, path: str, size: int, where: str) -> bytes:
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UnreadableFileError(f"{where}: cannot open file: {exc}") from exc
        with fh:
            stored = read_bounded(fh, _stored_bound(size), where)
        return _content(stored, size, where)

    def _read_member(self, path: str, member: str, size: int, where: str) -> bytes:
        arch, info = self._resolve(self._archive(path, path), path, member)
        return _content(arch.archive.read(info, _stored_bound(size)), size, where)

    def _resolve(self, arch: _Open, key: str, rest: str) -> tuple[_Open, Member]:
        """The archive and member that ``rest`` names inside ``arch``: the whole of ``rest``
        if it is a member, else a nested zip named by a prefix up to a ``!`` (a member name
        may itself hold ``!``: every split is tried, left to right)."""
        found = arch.members.get(rest)
        if found is not None:
            return arch, found
        i = rest.find("!")
        while i >= 0:
            outer = arch.members.get(rest[:i])
            if outer is not None:
                inner_key = f"{key}!{rest[:i]}"
                inner = self._open.get(inner_key)
                if inner is None:
                    blob = read_content(
                        arch.archive, outer, location(key, rest[:i]), self.limits.max_member_bytes
                    )
                    inner = self._archive(inner_key, io.BytesIO(blob))
                else:
                    self._open.move_to_end(inner_key)
                try:
                    return self._resolve(inner, inner_key, rest[i + 1 :])
                except KeyError:
                    pass
            i = rest.find("!", i + 1)
        problem = arch.archive.problem
        why = f" ({problem.error})" if problem is not None else ""
        raise KeyError(f"no member {rest!r} in {key}{why}")

    def close(self) -> None:
        for arch in self._open.values():
            arch.archive.close()
        self._open.clear()

    def __enter__(self) -> MemberReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
