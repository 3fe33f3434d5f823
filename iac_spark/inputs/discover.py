"""Expand user paths (directories, globs, zips, bare files) into input files.

Pure Python on the driver: stats each file once; zips are recognised by suffix
or by their ``PK\\x03\\x04`` magic.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import InputNotFoundError

__all__ = ["InputFile", "discover", "normalize_path"]

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class InputFile:
    """A file to scan: a zip archive or a bare (possibly DICOM) file."""

    path: str
    size: int
    mtime: float
    kind: Literal["zip", "file"]


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


def _walk(root: str, recursive: bool) -> Iterable[str]:
    if not recursive:
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if entry.is_file():
                yield entry.path
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield os.path.join(dirpath, name)


def discover(
    paths: Sequence[str],
    *,
    glob_filter: str | None = None,
    recursive: bool = True,
    filter_zips: bool = True,
) -> list[InputFile]:
    """List the files under ``paths`` in a stable order, without duplicates.

    ``glob_filter`` (Spark's ``pathGlobFilter``) matches file base names; with
    ``filter_zips=False`` zip archives are kept whatever their name (``ziptext`` applies its
    ``*.txt`` filter to the members inside them instead). Hidden files (``.name``) and Spark's
    ``_name`` metadata files found inside directories are skipped. Raises
    :class:`InputNotFoundError` naming the path that matched nothing.
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
                candidates: Iterable[str] = (
                    f
                    for f in _walk(match, recursive)
                    if not os.path.basename(f).startswith((".", "_"))
                )
            else:
                candidates = [match]
            for file in candidates:
                if file in seen:
                    continue
                kind: Literal["zip", "file"] = "zip" if _is_zip(file) else "file"
                if (
                    glob_filter
                    and (filter_zips or kind != "zip")
                    and not fnmatch.fnmatch(os.path.basename(file), glob_filter)
                ):
                    continue
                seen.add(file)
                st = os.stat(file)
                out.append(InputFile(file, st.st_size, st.st_mtime, kind))
    return out
