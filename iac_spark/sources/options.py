"""Typed ``zipdcm`` options, parsed once from Spark's case-insensitive string map.

Spark hands a data source only strings (``"false"`` is truthy in Python), so every
option is parsed here into a frozen dataclass, with an :class:`OptionError` that
names the option and the values it accepts.

Example:
    >>> o = ZipDcmOptions.parse({"path": "/data", "content": "TRUE", "mode": "failfast"})
    >>> o.paths, o.content, o.mode
    (('/data',), True, 'FAILFAST')
    >>> ZipDcmOptions.parse({"path": "/d", "content": "yes please"})
    Traceback (most recent call last):
    ...
    iac_spark.errors.OptionError: option 'content' must be true or false, got 'yes please'
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

from ..errors import InputNotFoundError, OptionError
from ..inputs.limits import InputLimits, parse_bool, parse_bytes
from ..inputs.scan import Mode
from ..text.decode import AUTO, DEFAULT_MAX_DOC_BYTES, Normalize, resolve_encoding
from ..text.fields import DEFAULT_PATH_PATTERN, compile_path_pattern
from ..text.rows import DEFAULT_GLOB

__all__ = ["ZipDcmOptions", "ZipTextOptions", "parse_bool", "parse_bytes"]

_MODES = ("PERMISSIVE", "DROPMALFORMED", "FAILFAST")


def _paths(options: Mapping[str, str], source: str = "zipdcm") -> tuple[str, ...]:
    """The ``path`` / ``paths`` options, each made absolute (see :func:`_absolute`)."""
    out: list[str] = []
    if options.get("paths"):
        raw = options["paths"]
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            parsed = [p for p in raw.split(",") if p]
        out.extend(str(p) for p in (parsed if isinstance(parsed, list) else [parsed]))
    if options.get("path"):
        out.append(options["path"])
    if not out:
        raise OptionError(
            f'{source} needs a path: spark.read.format("{source}").load("/path/to/zips")'
        )
    return tuple(dict.fromkeys(_absolute(p, source) for p in out))


def _absolute(path: str, source: str) -> str:
    """``path`` as an absolute local path, resolved once, where Spark parses the options.

    That is a Python worker on the driver side: on a classic session its working directory is
    the driver's, so a relative path means what the user meant; over Spark Connect it is the
    server's (pyspark's local server even gives each session a folder of its own), so a
    relative path means nothing there and one that does not exist is refused with that
    reason. Absolute paths are kept as given (``discover`` reports the missing ones) and so
    are URIs (``file:``, ``dbfs:``, ``s3://``...), which ``discover`` maps to local mounts.

    >>> _absolute("/data/zips", "zipdcm"), _absolute("dbfs:/Volumes/a", "zipdcm")
    ('/data/zips', 'dbfs:/Volumes/a')
    """
    if ":" in path.split("/", 1)[0] or os.path.isabs(path):
        return path
    expanded = os.path.expanduser(path)
    if os.path.isabs(expanded):
        return expanded
    resolved = os.path.abspath(expanded)
    if not any(c in resolved for c in "*?[") and not os.path.exists(resolved):
        raise InputNotFoundError(
            f"{source}: relative path {path!r} does not exist in {os.getcwd()}, the working "
            "directory of the process that plans the scan (over Spark Connect the server's, "
            "not this client's): pass an absolute path"
        )
    return resolved


def _common(source: str, opts: dict[str, str], known: tuple[str, ...]) -> dict[str, object]:
    """The options every scan source shares, parsed; unknown options are an error."""
    unknown = sorted(set(opts) - set(_COMMON) - set(known))
    if unknown:
        names = ", ".join(_NAMES[k] for k in (*known, *_COMMON) if k not in ("path", "paths"))
        raise OptionError(f"unknown {source} option(s) {unknown}; known: {names}")
    mode = opts.get("mode", "PERMISSIVE").strip().upper()
    if mode not in _MODES:
        raise OptionError(f"option 'mode' must be one of {', '.join(_MODES)}, got {opts['mode']!r}")
    num_partitions = None
    if "numpartitions" in opts:
        try:
            num_partitions = int(opts["numpartitions"])
        except ValueError:
            num_partitions = 0
        if num_partitions <= 0:
            raise OptionError(
                f"option 'numPartitions' must be a positive integer, got {opts['numpartitions']!r}"
            )
    return {
        "paths": _paths(opts, source),
        "mode": cast(Mode, mode),
        "include_skipped": parse_bool("includeSkipped", opts.get("includeskipped", "false")),
        "recursive_file_lookup": parse_bool(
            "recursiveFileLookup", opts.get("recursivefilelookup", "true")
        ),
        "max_partition_bytes": parse_bytes(
            "maxPartitionBytes", opts.get("maxpartitionbytes", "128m")
        ),
        "num_partitions": num_partitions,
        "limits": InputLimits.parse(opts),
    }


_COMMON = (
    "path", "paths", "mode", "includeskipped", "pathglobfilter", "recursivefilelookup",
    "maxpartitionbytes", "numpartitions", *InputLimits.KNOWN,
)  # fmt: skip
_NAMES = {
    "path": "path", "paths": "paths", "mode": "mode", "includeskipped": "includeSkipped",
    "pathglobfilter": "pathGlobFilter", "recursivefilelookup": "recursiveFileLookup",
    "maxpartitionbytes": "maxPartitionBytes", "numpartitions": "numPartitions",
    "content": "content", "meta": "meta", "pathpattern": "pathPattern", "encoding": "encoding",
    "maxdocbytes": "maxDocBytes", "normalize": "normalize",
    **{name.lower(): name for name in InputLimits.OPTIONS},
}  # fmt: skip


@dataclass(frozen=True)
class ZipDcmOptions:
    """Options of ``spark.read.format("zipdcm")`` (see docs/zipdcm.md)."""

    paths: tuple[str, ...]
    content: bool = False
    meta: bool = True
    include_skipped: bool = False
    mode: Mode = "PERMISSIVE"
    path_glob_filter: str | None = None
    recursive_file_lookup: bool = True
    max_partition_bytes: int = 128 * 1024**2
    num_partitions: int | None = None
    #: ``maxMemberBytes``, ``maxNestingDepth``, ``maxMembersPerArchive``, ``followSymlinks``
    limits: InputLimits = field(default_factory=InputLimits)

    KNOWN = ("content", "meta")

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> ZipDcmOptions:
        """Parse Spark's option map; unknown options are an error (typos must not pass silently)."""
        opts = {str(k).lower(): str(v) for k, v in options.items()}
        return cls(
            **_common("zipdcm", opts, cls.KNOWN),  # type: ignore[arg-type]
            content=parse_bool("content", opts.get("content", "false")),
            meta=parse_bool("meta", opts.get("meta", "true")),
            path_glob_filter=opts.get("pathglobfilter") or None,
        )


@dataclass(frozen=True)
class ZipTextOptions:
    """Options of ``spark.read.format("ziptext")`` (see docs/ziptext.md).

    >>> o = ZipTextOptions.parse({"path": "/notes", "encoding": "GBK", "maxDocBytes": "1m"})
    >>> o.encoding, o.max_doc_bytes, o.path_glob_filter
    ('gbk', 1048576, '*.txt')
    """

    paths: tuple[str, ...]
    path_pattern: str = DEFAULT_PATH_PATTERN
    encoding: str = AUTO
    path_glob_filter: str = DEFAULT_GLOB
    max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES
    normalize: Normalize | None = None
    include_skipped: bool = False
    mode: Mode = "PERMISSIVE"
    recursive_file_lookup: bool = True
    max_partition_bytes: int = 128 * 1024**2
    num_partitions: int | None = None
    #: ``maxMemberBytes``, ``maxNestingDepth``, ``maxMembersPerArchive``, ``followSymlinks``
    limits: InputLimits = field(default_factory=InputLimits)

    KNOWN = ("pathpattern", "encoding", "maxdocbytes", "normalize")

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> ZipTextOptions:
        """Parse Spark's option map (see :meth:`ZipDcmOptions.parse`)."""
        opts = {str(k).lower(): str(v) for k, v in options.items()}
        pattern = opts.get("pathpattern") or DEFAULT_PATH_PATTERN
        compile_path_pattern(pattern)  # validates now, on the driver
        normalize = opts.get("normalize", "").strip().upper() or None
        if normalize not in (None, "NFC"):
            raise OptionError(
                f"option 'normalize' must be NFC or not set, got {opts['normalize']!r}"
            )
        return cls(
            **_common("ziptext", opts, cls.KNOWN),  # type: ignore[arg-type]
            path_pattern=pattern,
            encoding=resolve_encoding(opts.get("encoding", AUTO)),
            path_glob_filter=opts.get("pathglobfilter") or DEFAULT_GLOB,
            max_doc_bytes=parse_bytes(
                "maxDocBytes", opts.get("maxdocbytes", str(DEFAULT_MAX_DOC_BYTES))
            ),
            normalize=cast(Normalize | None, normalize),
        )
