"""Read one member's full bytes by (path, member), as the pack tasks do.

Members are named exactly as the ``zipdcm`` source names them (decoded names,
``#n`` suffixes for repeated names, ``!`` for nested zips). Open archives and
their name maps are cached, a few at a time, since a task reads its members
archive by archive. Bytes are checked against the expected size and CRC-32.

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
import zipfile
import zlib
from collections import OrderedDict
from types import TracebackType

from ..errors import CorruptZipError, MemberError, location
from .archives import MemberInfo, list_members, read_bounded

__all__ = ["MemberReader"]


class _Archive:
    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.members: dict[str, MemberInfo] = {m.name: m for m in list_members(zf)}


class MemberReader:
    """Cached random access to members; not thread-safe (one per task)."""

    def __init__(self, max_open: int = 4) -> None:
        self.max_open = max_open
        self._open: OrderedDict[str, _Archive] = OrderedDict()

    def _archive(self, key: str, opener: object) -> _Archive:
        arch = self._open.get(key)
        if arch is not None:
            self._open.move_to_end(key)
            return arch
        zf = zipfile.ZipFile(opener)  # type: ignore[call-overload]
        arch = _Archive(zf)
        self._open[key] = arch
        while len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            old.zf.close()
        return arch

    def read(self, path: str, member: str | None, size: int, crc32: int) -> bytes:
        """The member's bytes; :class:`MemberError` (naming file and member) if unreadable or changed.

        For zip members the CRC-32 is not recomputed: ``zipfile`` checks the bytes against the
        directory's CRC when a member is read to its end, so comparing that CRC with the
        scan's is enough. Bare files are hashed here.
        """
        where = location(path, member)
        try:
            if member is None:
                with open(path, "rb") as fh:
                    data = read_bounded(fh, size, where)
                actual_crc = zlib.crc32(data)
            else:
                data, actual_crc = self._read_member(path, member, size, where)
        except MemberError:
            raise
        except (
            zipfile.BadZipFile,
            zlib.error,
            OSError,
            EOFError,
            KeyError,
            ValueError,
            RuntimeError,
        ) as exc:
            raise CorruptZipError(
                f"{where}: cannot read member: {type(exc).__name__}: {exc}"
            ) from exc
        if len(data) != size or actual_crc != crc32:
            raise CorruptZipError(
                f"{where}: bytes changed since the scan (size {len(data)} vs {size}, "
                f"crc32 {actual_crc} vs {crc32})"
            )
        return data

    def _read_member(self, path: str, member: str, size: int, where: str) -> tuple[bytes, int]:
        parts = member.split("!")
        arch = self._archive(path, path)
        key = path
        for nested in parts[:-1]:
            info = arch.members[nested]
            key = f"{key}!{nested}"
            if key not in self._open:
                with arch.zf.open(info.info) as fh:
                    blob = read_bounded(fh, info.size, location(path, nested))
                arch = self._archive(key, io.BytesIO(blob))
            else:
                arch = self._archive(key, None)
        info = arch.members[parts[-1]]
        with arch.zf.open(info.info) as fh:
            data = read_bounded(fh, size, where)  # read to EOF: zipfile verifies info.CRC
        return data, info.crc32

    def close(self) -> None:
        for arch in self._open.values():
            arch.zf.close()
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
