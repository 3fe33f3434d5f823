"""Survey input files once: fingerprint and member weights from one central-directory read.

A build needs three things from a zip's central directory: its fingerprint (has it changed
since the catalog saw it?), the weights of its members (to balance scan partitions and split
big zips by member ranges) and nothing else — member fates come from the scan itself. Reading
the directory of 1,400 zips takes a few seconds on network storage, so it is read exactly once
per zip, here, and both results are kept on the :class:`Source`.

A member's weight is its compressed size plus a fixed per-member cost (:data:`MEMBER_COST`),
because a metadata scan spends about the same time on every header whatever the pixel size.
Weights are kept as a compact ``array('q')`` (8 bytes per member), not Python objects.

Example:
    >>> import os, tempfile, zipfile
    >>> from iac_spark.inputs.discover import discover
    >>> d = tempfile.mkdtemp(); z = os.path.join(d, "a.zip")
    >>> with zipfile.ZipFile(z, "w") as zf:
    ...     zf.writestr("x.dcm", b"one"); zf.writestr("y.dcm", b"two")
    >>> [s] = survey(discover([z]))
    >>> len(s.fingerprint), s.num_members, s.total_weight == 2 * MEMBER_COST + 6
    (64, 2, True)
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .archive import open_archive
from .discover import InputFile
from .limits import InputLimits

__all__ = ["FINGERPRINT_VERSION", "MEMBER_COST", "Source", "fingerprint", "mtime_ns", "survey"]

#: Weight added per member (bytes-equivalent of parsing one header).
MEMBER_COST = 64 * 1024

#: Bumped if the fingerprint recipe changes (every source then counts as changed once).
FINGERPRINT_VERSION = "iacfp1"


def mtime_ns(f: InputFile) -> int:
    """The discovery mtime in integer nanoseconds (stable for the same ``os.stat`` result).

    >>> mtime_ns(InputFile("/x", 1, 1.5, "file"))
    1500000000
    """
    return round(f.mtime * 1_000_000_000)


def fingerprint(f: InputFile, entries: Iterable[tuple[str, int, int]] | None) -> str:
    """SHA-256 hex digest of (path, size, mtime_ns, kind) and, for zips, the directory entries.

    ``entries`` are ``(decoded name, crc32, size)`` in directory order, or None for a bare file
    or an unreadable zip (which gets a fixed marker, so its fingerprint is still stable and it
    is re-ingested once repaired: size and mtime change). Rewriting a zip with one member changed
    alters that member's CRC, so the fingerprint changes even if a tool restored the old mtime.

    >>> fingerprint(InputFile("/d/x.dcm", 3, 0.0, "file"), None)[:12]
    '3a82832d47d2'
    """
    h = hashlib.sha256()
    h.update(f"{FINGERPRINT_VERSION}\0{f.path}\0{f.size}\0{mtime_ns(f)}\0{f.kind}\0".encode())
    if f.kind == "zip":
        if entries is None:
            h.update(b"unreadable-zip\0")
        else:
            for name, crc, size in entries:
                h.update(f"{name}\0{crc:08x}\0{size}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class Source:
    """One input file as a build sees it: fingerprint and (for readable zips) member weights."""

    file: InputFile
    fingerprint: str
    #: per top-level member (directory order), compressed size + MEMBER_COST; None when the
    #: file is bare, skipped, or its directory cannot be read (the scan salvages or reports)
    weights: array[int] | None = field(default=None, repr=False)

    @property
    def path(self) -> str:
        return self.file.path

    @property
    def num_members(self) -> int | None:
        """Top-level directory entries (nested zips count as one); None for bare/unreadable."""
        return None if self.weights is None else len(self.weights)

    @property
    def total_weight(self) -> int:
        """What the partition planner balances on."""
        if self.weights is None:
            return self.file.size + MEMBER_COST
        return sum(self.weights)


def _survey_zip(f: InputFile, limits: InputLimits) -> Source:
    with open_archive(f.path, f.path, limits) as arch:
        if not arch.salvaged and not arch.refused:
            members = arch.members  # (a directory that does not parse falls back to salvage)
            if not arch.salvaged and not arch.refused:
                entries = ((m.name, m.crc32, m.size) for m in members)
                weights = array("q", (m.compress_size + MEMBER_COST for m in members))
                return Source(f, fingerprint(f, entries), weights)
    return Source(f, fingerprint(f, None), None)  # one unit: the scan salvages or reports it


def survey(files: Sequence[InputFile], *, limits: InputLimits | None = None) -> list[Source]:
    """Read each zip's central directory once; bare files are only fingerprinted.

    A zip without a (parseable) central directory, an unreadable one, or one listing more
    than ``limits.max_members_per_archive`` entries gets no weights: it is one scan unit,
    whose scan salvages it or reports it. Salvage walks are left to the scan (for a zip
    with data descriptors a walk inflates every member; the driver must not).
    """
    lim = limits or InputLimits()
    return [
        _survey_zip(f, lim) if f.kind == "zip" else Source(f, fingerprint(f, None), None)
        for f in files
    ]
