"""One door to a zip archive, whatever state it is in: listed, salvaged or refused.

:func:`open_archive` opens a zip on disk (by path) or in memory (a nested zip) and gives
an :class:`Archive`: its ``members`` (file entries, in archive order, named by the rules
of :mod:`iac_spark.inputs.archives`: decoded names, ``#n`` for a repeated name), the
``problem`` that stops part of it from being read (:class:`ArchiveProblem`, or None) and
``open(member)``, a bounded, CRC-checked stream of one member's bytes. The scan, nested
zips, the pack tasks' :class:`~iac_spark.inputs.fetch.MemberReader` and the survey all
read archives through it, so they agree on every name and every fate.

How an archive is listed:

* **with its central directory** (:func:`~iac_spark.inputs.salvage.locate_central_directory`):
  a lean reader parses the directory in 1 MiB chunks, without :mod:`zipfile`'s per-entry
  objects (70,000 entries list in about a tenth of the time, a third of the memory);
* **without one** (a download cut short) or with a directory that does not parse: the
  local headers are walked (:func:`~iac_spark.inputs.salvage.salvage_members`); every
  complete member is listed and the cut one becomes the ``problem``, named;
* **refused**: the file cannot be opened or read (:class:`UnreadableFileError`), or its
  directory counts more entries than ``maxMembersPerArchive``
  (:class:`~iac_spark.inputs.limits.TooManyMembersError`, found from the end record
  before a single entry is parsed): no members, one problem.

How a member is read: stored and deflated members through one reader (their local
header locates the data) that fails as soon as the data inflates past the declared size
(:class:`~iac_spark.errors.MemberTooLargeError`, one read's worth of memory) and checks
the CRC-32 at the end (:class:`~iac_spark.errors.CorruptZipError`, this member only);
encrypted members raise :class:`~iac_spark.inputs.salvage.EncryptedMemberError`; other
methods (bzip2, LZMA) go through :mod:`zipfile`. Streams raise only
:class:`~iac_spark.errors.MemberError` subclasses (and ``OSError`` from the disk).

Example:
    >>> import io, zipfile
    >>> buf = io.BytesIO()
    >>> with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
    ...     zf.writestr("a/1.dcm", b"first" * 100)
    ...     zf.writestr("a/2.dcm", b"second" * 100)
    >>> with open_archive(io.BytesIO(buf.getvalue()), "/d/x.zip") as arch:
    ...     [(m.name, m.size) for m in arch.members], arch.problem, arch.salvaged
    ([('a/1.dcm', 500), ('a/2.dcm', 600)], None, False)
    >>> with open_archive(io.BytesIO(buf.getvalue()[:90]), "/d/x.zip") as arch:
    ...     [m.name for m in arch.members], arch.read(arch.members[0])[:10], arch.salvaged
    ...     arch.problem.member, type(arch.problem.error).__name__
    (['a/1.dcm'], b'firstfirst', True)
    ('a/2.dcm', 'TruncatedArchiveError')
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

from ..errors import CorruptZipError, MemberError, location
from .archives import MemberInfo, decode_raw_name, read_bounded, unique_name
from .gzipped import is_gzip, read_gzip_member
from .limits import InputLimits, TooManyMembersError
from .salvage import (
    MAX_DECLARED_SIZE,
    CentralDirectory,
    EncryptedMemberError,
    SalvagedMember,
    SalvageError,
    locate_central_directory,
    open_data,
    open_member,
    salvage_members,
)

__all__ = [
    "Archive",
    "ArchiveProblem",
    "Member",
    "UnreadableFileError",
    "deflate_bound",
    "open_archive",
    "read_content",
]

#: A listed member: from the central directory, or salvaged from its local header.
Member = MemberInfo | SalvagedMember

_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
_CD_ENTRY = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes
_U32_MAX = 0xFFFFFFFF
_ZIP64_TAG = 0x0001
_CHUNK = 1 << 20


class UnreadableFileError(MemberError):
    """An input file (or folder) cannot be opened or read: permission denied, removed since
    it was listed, an I/O error. Its error row has ``member`` null; fix the permissions
    (the job's user must be able to read every input) and run again."""


@dataclass(frozen=True)
class ArchiveProblem:
    """What stops (part of) an archive from being read: one error row.

    ``member`` is the decoded name of the member it concerns (the one a cut archive ends
    in), or None when it concerns the archive itself (unreadable, refused, or cut where no
    member can be named); ``error`` names the file (and the member) and says what is wrong.
    """

    member: str | None
    error: MemberError


def deflate_bound(size: int) -> int:
    """The most compressed bytes a deflate encoder plausibly spends on ``size`` bytes.

    Incompressible data costs 5 bytes per stored block of up to 64 KiB; this allows an
    eighth more, plus 1 KiB. A deflated member holding more compressed bytes than this
    for its declared size almost surely inflates past that size (a bomb lying about it):
    :meth:`Archive.check_declared_size` then inflates it (output discarded) to find out.

    >>> deflate_bound(0), deflate_bound(65536)
    (1024, 74752)
    """
    return size + (size >> 3) + 1024


class Archive:
    """An open archive (see the module docstring); use :func:`open_archive` to make one.

    ``members`` and ``problem`` are computed on first use (the survey of a salvaged zip
    reads neither); ``salvaged`` says whether the listing walks local headers. Not
    thread-safe; close it (or use ``with``) to release the file.
    """

    def __init__(
        self,
        fh: IO[bytes] | None,
        where: str,
        limits: InputLimits,
        *,
        directory: CentralDirectory | None,
        owns: bool,
        refused: MemberError | None = None,
    ) -> None:
        self.where = where
        self.limits = limits
        self._fh = fh
        self._owns = owns
        self._directory = directory
        self._members: list[Member] | None = [] if refused is not None else None
        self._problem = ArchiveProblem(None, refused) if refused is not None else None
        self._refused = refused is not None
        self._zf: zipfile.ZipFile | None = None

    # ------------------------------------------------------------------ listing
    @property
    def refused(self) -> bool:
        """True when the archive could not be listed at all (see ``problem``)."""
        return self._refused

    @property
    def salvaged(self) -> bool:
        """True when the members are (to be) found by walking the local headers."""
        return not self._refused and self._directory is None

    @property
    def members(self) -> Sequence[Member]:
        """File entries (directories left out), in archive order."""
        if self._members is None:
            self._list()
        assert self._members is not None
        return self._members

    @property
    def problem(self) -> ArchiveProblem | None:
        """The archive-level error row, if any (after listing)."""
        if self._members is None:
            self._list()
        return self._problem

    def _list(self) -> None:
        assert self._fh is not None
        try:
            if self._directory is not None:
                try:
                    self._members = _read_directory(
                        self._fh, self._directory, self.where, self.limits
                    )
                    return
                except _BadDirectory:
                    self._directory = None  # the directory does not parse: walk the headers
            self._salvage()
        except MemberError as exc:
            self._members, self._problem, self._refused = [], ArchiveProblem(None, exc), True
        except OSError as exc:
            self._members, self._refused = [], True
            self._problem = ArchiveProblem(
                None, UnreadableFileError(f"{self.where}: cannot read the archive: {exc}")
            )

    def _salvage(self) -> None:
        assert self._fh is not None
        found: list[Member] = []
        limit = self.limits.max_members_per_archive
        for item in salvage_members(
            self._fh, where=self.where, max_member_bytes=self.limits.max_member_bytes
        ):
            if isinstance(item, SalvageError):
                self._problem = ArchiveProblem(item.name, item.error)
                break
            found.append(item)
            if len(found) > limit:
                self.limits.check_member_count(len(found), self.where)  # raises
        self._members = found

    # ------------------------------------------------------------------ reading
    def open(self, member: Member) -> IO[bytes]:
        """A stream of ``member``'s bytes, bounded by its declared size and CRC-checked at
        its end; raises :class:`EncryptedMemberError` or
        :class:`~iac_spark.errors.CorruptZipError` (no local header, unsupported method)."""
        assert self._fh is not None
        where = location(self.where, member.name)
        if isinstance(member, SalvagedMember):
            return open_member(self._fh, member, where=where)
        if member.encrypted:
            raise EncryptedMemberError(f"{where}: member is encrypted; it is not decrypted here")
        if member.method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            return self._zipfile_open(member, where)
        if member.header_offset < 0:
            raise CorruptZipError(
                f"{where}: the central directory puts the member at byte "
                f"{member.header_offset}, before the start of the archive"
            )
        self._fh.seek(member.header_offset)
        header = self._fh.read(30)
        if len(header) < 30 or header[:4] != _LOCAL:
            raise CorruptZipError(
                f"{where}: no local file header at byte {member.header_offset}, where the "
                "central directory says the member starts"
            )
        n_name, n_extra = struct.unpack_from("<HH", header, 26)
        return open_data(
            self._fh, where, data_offset=member.header_offset + 30 + n_name + n_extra,
            compress_size=member.compress_size, size=member.size, crc32=member.crc32,
            method=member.method,
        )  # fmt: skip

    def read(self, member: Member, limit: int | None = None) -> bytes:
        """The member's whole stored bytes (not gunzipped), at most ``limit`` (default
        ``maxMemberBytes``): a larger declared size is refused before reading."""
        where = location(self.where, member.name)
        bound = self.limits.max_member_bytes if limit is None else limit
        with self.open(member) as stream:
            data = read_bounded(stream, member.size, where, bound)
        if len(data) < member.size:
            raise CorruptZipError(f"{where}: member ends after {len(data)} of {member.size} bytes")
        return data

    def check_declared_size(self, member: Member) -> None:
        """Raise :class:`~iac_spark.errors.MemberTooLargeError` if a deflated member holds
        more compressed bytes than :func:`deflate_bound` of its declared size *and* indeed
        inflates past that size (found by inflating it, output discarded, 1 MiB at a time).

        For readers that stop early (a header parse): a whole read finds the lie anyway.
        """
        if member.compress_type != zipfile.ZIP_DEFLATED or member.compress_size <= deflate_bound(
            member.size
        ):
            return
        with self.open(member) as stream:
            while stream.read(_CHUNK):
                pass

    def _zipfile_open(self, member: MemberInfo, where: str) -> IO[bytes]:
        try:
            if self._zf is None:
                assert self._fh is not None
                self._zf = zipfile.ZipFile(self._fh)
            stream = self._zf.open(self._zf.infolist()[member.index])
            return io.BufferedReader(_Translated(stream, where), buffer_size=1 << 16)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError) as exc:
            raise CorruptZipError(
                f"{where}: cannot open member (compression method {member.method}): {exc}"
            ) from exc
        except (IndexError, EOFError) as exc:
            raise CorruptZipError(f"{where}: cannot open member: {exc}") from exc

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        if self._zf is not None:
            self._zf.close()
            self._zf = None
        if self._owns and self._fh is not None:
            self._fh.close()
        self._fh = None

    def __enter__(self) -> Archive:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_archive(source: str | IO[bytes], where: str, limits: InputLimits | None = None) -> Archive:
    """Open the zip at path ``source`` (or the seekable stream ``source``, kept open on close).

    ``where`` (file, or file + nested member) goes into every message. Never raises for a
    bad archive: an unreadable, refused or broken one is an :class:`Archive` whose
    ``problem`` says so.
    """
    lim = limits or InputLimits()
    owns = isinstance(source, str)
    try:
        fh: IO[bytes] = open(source, "rb") if isinstance(source, str) else source  # noqa: SIM115
    except OSError as exc:
        err = UnreadableFileError(f"{where}: cannot open file: {exc}")
        return Archive(None, where, lim, directory=None, owns=False, refused=err)
    try:
        directory = locate_central_directory(fh)
        if directory is not None:
            lim.check_member_count(directory.entries, where)
    except TooManyMembersError as exc:
        return Archive(fh, where, lim, directory=None, owns=owns, refused=exc)
    except OSError as exc:
        err = UnreadableFileError(f"{where}: cannot read file: {exc}")
        return Archive(fh, where, lim, directory=None, owns=owns, refused=err)
    return Archive(fh, where, lim, directory=directory, owns=owns)


def read_content(archive: Archive, member: Member, where: str, limit: int) -> bytes:
    """A member's content: its bytes, inflated when they are gzip (at most ``limit`` bytes
    either way; :class:`~iac_spark.errors.MemberTooLargeError` past it)."""
    data = archive.read(member, limit)
    if is_gzip(data[:3]):
        return read_gzip_member(io.BytesIO(data), where=where, max_bytes=limit)
    return data


# ---------------------------------------------------------------------- the directory reader
class _BadDirectory(Exception):
    """The central directory does not parse (the caller walks the local headers instead)."""


def _read_directory(
    fh: IO[bytes], d: CentralDirectory, where: str, limits: InputLimits
) -> list[Member]:
    """The file entries of the directory ``d``: names decoded and made unique as
    :func:`~iac_spark.inputs.archives.list_members` makes them, ZIP64 sizes and offsets
    applied, directories left out. Reads ``d.size`` bytes, 1 MiB at a time."""
    out: list[Member] = []
    seen: dict[str, int] = {}
    unpack = _CD_ENTRY.unpack_from
    concat = d.concat
    fh.seek(d.offset)
    left = d.size
    buf = b""
    pos = 0
    index = 0
    limit = limits.max_members_per_archive
    while True:
        if len(buf) - pos < 46:
            if left <= 0:
                break
            more = fh.read(min(_CHUNK, left))
            if not more:
                raise _BadDirectory(f"{where}: central directory cut short")
            left -= len(more)
            buf, pos = buf[pos:] + more, 0
            continue
        (sig, _, _, flags, method, _, _, crc, csize, usize, n_name, n_extra, n_comment,
         _, _, _, offset) = unpack(buf, pos)  # fmt: skip
        if sig != _CENTRAL:
            raise _BadDirectory(f"{where}: bad central directory entry at {d.offset + pos}")
        need = 46 + n_name + n_extra + n_comment
        if len(buf) - pos < need:
            if left <= 0:
                raise _BadDirectory(f"{where}: central directory cut short")
            more = fh.read(min(max(_CHUNK, need), left))
            if not more:
                raise _BadDirectory(f"{where}: central directory cut short")
            left -= len(more)
            buf, pos = buf[pos:] + more, 0
            continue
        name = decode_raw_name(buf[pos + 46 : pos + 46 + n_name], flags)
        if _U32_MAX in (usize, csize, offset):
            start = pos + 46 + n_name
            usize, csize, offset = _zip64(buf[start : start + n_extra], usize, csize, offset)
            if max(usize, csize, offset) > MAX_DECLARED_SIZE:
                raise _BadDirectory(f"{where}: a ZIP64 size or offset of {name!r} is out of range")
        pos += need
        if not name.endswith("/"):
            member = MemberInfo(
                index, unique_name(seen, name), usize, csize, crc, None, flags, method,
                offset + concat,
            )  # fmt: skip
            out.append(member)
        index += 1
        if index > limit:
            limits.check_member_count(index, where)  # raises: the end record undercounted
    return out


def _zip64(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """Sizes and offset with a central entry's ZIP64 extra field applied: it holds, in this
    order, only the values that are 0xFFFFFFFF in the entry (as :mod:`zipfile` reads it)."""
    i = 0
    while i + 4 <= len(extra):
        tag, n = struct.unpack_from("<HH", extra, i)
        if tag == _ZIP64_TAG:
            body = extra[i + 4 : i + 4 + n]
            values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            if usize == _U32_MAX and values:
                usize = values.pop(0)
            if csize == _U32_MAX and values:
                csize = values.pop(0)
            if offset == _U32_MAX and values:
                offset = values.pop(0)
            break
        i += 4 + n
    return usize, csize, offset


class _Translated(io.RawIOBase):
    """A :mod:`zipfile` member stream whose failures surface as
    :class:`~iac_spark.errors.CorruptZipError` (bzip2 / LZMA members only)."""

    def __init__(self, stream: IO[bytes], where: str) -> None:
        super().__init__()
        self._stream = stream
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            data = self._stream.read(len(b))
        except MemberError:
            raise
        except Exception as exc:  # bz2, lzma and zipfile each raise their own
            raise CorruptZipError(f"{self._where}: cannot inflate member: {exc}") from exc
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()
