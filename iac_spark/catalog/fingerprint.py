"""Source fingerprints: has this input file changed since it was catalogued?

``fingerprint(f)`` is a stable hex digest of the file's path, size and modification
time (nanoseconds) and, for zips, of the central directory entries (decoded names,
CRC-32s and sizes). Reading the central directory is cheap: nothing is inflated.
Rewriting a zip with one member changed alters the member CRC (and usually size and
mtime), so the fingerprint changes even if a tool restored the old mtime.

Example:
    >>> import os, tempfile, zipfile
    >>> from iac_spark.inputs.discover import discover
    >>> d = tempfile.mkdtemp(); z = os.path.join(d, "a.zip")
    >>> with zipfile.ZipFile(z, "w") as zf:
    ...     zf.writestr("x.dcm", b"one")
    >>> [f] = discover([z])
    >>> fp = fingerprint(f)
    >>> len(fp), fp == fingerprint(f)
    (64, True)
    >>> zip_entries(z)[0][:2]
    ('x.dcm', 2053932785)
"""

from __future__ import annotations

import hashlib
import zipfile

from ..inputs.archives import list_members
from ..inputs.discover import InputFile

__all__ = ["FINGERPRINT_VERSION", "fingerprint", "mtime_ns", "zip_entries"]

#: Bumped if the recipe changes (every source then counts as changed once).
FINGERPRINT_VERSION = "iacfp1"


def mtime_ns(f: InputFile) -> int:
    """The discovery mtime in integer nanoseconds (stable for the same ``os.stat`` result).

    >>> mtime_ns(InputFile("/x", 1, 1.5, "file"))
    1500000000
    """
    return round(f.mtime * 1_000_000_000)


def zip_entries(path: str) -> list[tuple[str, int, int]] | None:
    """``(name, crc32, size)`` of the zip's file entries in directory order; None if unreadable.

    Names are decoded as the scanner decodes them (so they match ``source_member``);
    directories are left out. Only the central directory is read.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            return [(m.name, m.crc32, m.size) for m in list_members(zf)]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError):
        return None


def fingerprint(f: InputFile, *, entries: list[tuple[str, int, int]] | None = None) -> str:
    """Stable SHA-256 hex digest of (path, size, mtime_ns) plus, for zips, the central directory.

    ``entries`` may be passed when the caller already listed the zip (see :func:`zip_entries`).
    An unreadable zip gets a fixed marker instead of its directory, so it still has a
    stable fingerprint (and is re-ingested once it is repaired: its size/mtime change).
    """
    h = hashlib.sha256()
    h.update(f"{FINGERPRINT_VERSION}\0{f.path}\0{f.size}\0{mtime_ns(f)}\0{f.kind}\0".encode())
    if f.kind == "zip":
        listed = entries if entries is not None else zip_entries(f.path)
        if listed is None:
            h.update(b"unreadable-zip\0")
        else:
            for name, crc, size in listed:
                h.update(f"{name}\0{crc:08x}\0{size}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()
