"""Expand user paths (directories, globs, zips, bare files) into input files.

Pure Python on the driver: stats each file once; zips are recognised by suffix
or by their ``PK\\x03\\x04`` magic.

Symlinks inside an input folder are not followed out of it unless ``follow_symlinks``
(``followSymlinks=true``): a file link, or a folder link, that resolves outside the folder
it was found in is listed as kind ``"skip"`` under its own path and never opened, so it is
visible (one skipped member of its own source; a row with ``includeSkipped=true``) and
nothing outside the input root is read. A link that stays inside the root is read as a
file (a folder link is not walked: what it points at is walked under its own path). Paths
given explicitly (or matched by a glob) are read wherever they point: the user named them.
Anything that is not a regular file (a FIFO, socket or device, which could block or never
end) is kind ``"skip"`` too. A folder that cannot be listed (permission denied) and a
dangling link are kind ``"file"``: their scan is an error row saying why.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "a.zip").write_bytes(b"PK\\x03\\x04")
    4
    >>> [(pathlib.Path(f.path).name, f.kind) for f in discover([str(d)])]
    [('a.zip', 'zip')]
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import InputNotFoundError
from .limits import escapes_root

__all__ = ["InputFile", "discover", "normalize_path"]

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class InputFile:
    """A file to scan: a zip archive, a bare (possibly DICOM) file, or ``"skip"``: a path
    listed but never opened (a symlink out of the input root, not a regular file)."""

    path: str
    size: int
    mtime: float
    kind: Literal["zip", "file", "skip"]


def normalize_path(path: str) -> str:
    """Absolute local path; ``file:`` URIs and Databricks ``dbfs:/`` paths map to the local mount.

    >>> normalize_path("file:///tmp/x.zip")
    '/tmp/x.zip'
    >>> normalize_path("dbfs:/Volumes/main/raw/a.zip")
    '/dbfs/Volumes/main/raw/a.zip'
    """
    if path.startswith("file://"):
        path = path[len("file://") :]
    elif path.startswith("file:"):
        path = path[len("file:") :]
    elif path.startswith("dbfs:/"):
        rest = path[len("dbfs:") :]
        path = rest if rest.startswith("/Volumes/") and os.path.exists(rest) else "/dbfs" + rest
    return os.path.abspath(os.path.expanduser(path))


def _is_zip(path: str) -> bool:
    if path.lower().endswith(".zip"):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


@dataclass(frozen=True)
class _Found:
    """A path found under an input root, and what the walk knows of it already."""

    path: str
    outside: bool = False  # a symlink (file or folder) resolving outside the root, not followed
    unlisted: bool = False  # a folder that could not be listed


def _walk(root: str, recursive: bool, follow: bool) -> Iterable[_Found]:
    """The entries under folder ``root`` in a stable order (see the module docstring)."""
    if not recursive:
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError:
            yield _Found(root, unlisted=True)
            return
        for entry in entries:
            if entry.is_symlink() and not follow and escapes_root(entry.path, root):
                yield _Found(entry.path, outside=True)
            elif entry.is_file() or not entry.is_dir():
                yield _Found(entry.path)
        return
    unlisted: list[str] = []
    visited: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(
        root, followlinks=follow, onerror=lambda e: unlisted.append(str(e.filename))
    ):
        if follow:  # links may form loops: walk each real folder once
            real = os.path.realpath(dirpath)
            if real in visited:
                dirnames[:] = []
                continue
            visited.add(real)
        dirnames.sort()
        outside = []
        if not follow:
            for d in dirnames:
                full = os.path.join(dirpath, d)
                if os.path.islink(full) and escapes_root(full, root):
                    outside.append(d)
        for name in sorted([*filenames, *outside]):
            full = os.path.join(dirpath, name)
            escapes = not follow and os.path.islink(full) and escapes_root(full, root)
            yield _Found(full, outside=name in outside or escapes)
    for path in sorted(unlisted):
        yield _Found(path, unlisted=True)


def _input_file(found: _Found) -> InputFile | None:
    """Stat ``found`` once (following a link it may read); None when it vanished."""
    path = found.path
    if found.outside or found.unlisted:
        try:
            st = os.lstat(path)
        except OSError:
            return None
        return InputFile(path, st.st_size, st.st_mtime, "skip" if found.outside else "file")
    try:
        st = os.stat(path)
    except OSError:
        try:
            st = os.lstat(path)  # a dangling link: its scan reports it
        except OSError:
            return None
        return InputFile(path, st.st_size, st.st_mtime, "file")
    if stat.S_ISDIR(st.st_mode):
        return None  # a folder link inside the root (not walked), or a folder named explicitly
    if not stat.S_ISREG(st.st_mode):
        return InputFile(path, st.st_size, st.st_mtime, "skip")  # FIFO, socket, device
    return InputFile(path, st.st_size, st.st_mtime, "zip" if _is_zip(path) else "file")


def discover(
    paths: Sequence[str],
    *,
    glob_filter: str | None = None,
    recursive: bool = True,
    filter_zips: bool = True,
    follow_symlinks: bool = False,
) -> list[InputFile]:
    """List the files under ``paths`` in a stable order, without duplicates.

    ``glob_filter`` (Spark's ``pathGlobFilter``) matches file base names; with
    ``filter_zips=False`` zip archives are kept whatever their name (``ziptext`` applies its
    ``*.txt`` filter to the members inside them instead). Hidden files (``.name``) and Spark's
    ``_name`` metadata files found inside directories are skipped. ``follow_symlinks``
    (``followSymlinks``): follow links out of the input folders (see the module docstring).
    Raises :class:`InputNotFoundError` naming the path that matched nothing.
    """
    seen: set[str] = set()
    out: list[InputFile] = []
    for raw in paths:
        path = normalize_path(raw)
        if any(c in path for c in _GLOB_CHARS):
            matches = sorted(glob.glob(path, recursive=True))
        else:
            matches = [path] if os.path.exists(path) else []
        if not matches:
            raise InputNotFoundError(f"path does not exist or matches no file: {raw}")
        for match in matches:
            if os.path.isdir(match):
                candidates: Iterable[_Found] = (
                    f
                    for f in _walk(match, recursive, follow_symlinks)
                    if not os.path.basename(f.path).startswith((".", "_")) or f.unlisted
                )
            else:
                candidates = [_Found(match)]
            for found in candidates:
                if found.path in seen:
                    continue
                f = _input_file(found)
                if f is None:
                    continue
                if (
                    glob_filter
                    and (filter_zips or f.kind != "zip")
                    and not found.unlisted
                    and not (found.outside and os.path.isdir(found.path))
                    and not fnmatch.fnmatch(os.path.basename(f.path), glob_filter)
                ):
                    continue
                seen.add(found.path)
                out.append(f)
    return out
