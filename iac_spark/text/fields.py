"""Document fields from a note's path: institution, patient, encounter, type, timestamp, doc_id.

The ``pathPattern`` option is a regular expression with named groups. It is matched
against the **last components** of a path: a zip member name (for nested zips the
innermost name, after the last ``!``) or a bare file's path under the load root, with
``\\`` read as ``/``. The pattern must match a whole run of trailing components; the
shortest such run wins, so leading folders (``export/``, the load root, ...) are
ignored. The default matches ``INSTITUTION/PATIENT_ID/ENCOUNTER/DOCTYPE_YYYYMMDDHHMMSS.txt``.

Groups: ``patient_id``, ``encounter``, ``doc_type`` and ``doc_timestamp`` are
required (``doc_id = PATIENT_ID/ENCOUNTER/DOCTYPE_TIMESTAMP`` needs all four, and it
is the key that pairs a note with its compressed partner); ``institution`` is
optional (``None`` when the pattern has no such group or it matched nothing).
Other named groups are allowed and ignored. A match that leaves a required group
empty does not count (a longer run may still match); if no run gives them all, it is a
mismatch that names the empty groups.

``doc_timestamp`` is kept as the string in the path (14 digits ``YYYYMMDDHHMMSS`` for
the default pattern), not a timestamp: the iatro adapters store it as a str
(``ClinicalDoc.doc_timestamp``), readers must get back exactly what the path said,
the time zone of a hospital's file names is unknown (the catalog's timestamps are
UTC), and 14-digit strings sort in time order. The default pattern accepts only
plausible digits (month 01-12, day 01-31, hour 00-23, minute and second 00-59).

Example:
    >>> from iac_spark.text.fields import path_fields
    >>> f = path_fields("export/XJ/Patient_00000001/2024-01-01/入院记录_20240101000000.txt")
    >>> f.institution, f.patient_id, f.encounter, f.doc_type, f.doc_timestamp
    ('XJ', 'Patient_00000001', '2024-01-01', '入院记录', '20240101000000')
    >>> f.doc_id
    'Patient_00000001/2024-01-01/入院记录_20240101000000'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from iac_spark.errors import OptionError
from iac_spark.text.errors import PathPatternMismatchError

__all__ = [
    "DEFAULT_PATH_PATTERN",
    "OPTIONAL_GROUPS",
    "REQUIRED_GROUPS",
    "PathFields",
    "compile_path_pattern",
    "make_doc_id",
    "path_fields",
]

REQUIRED_GROUPS: tuple[str, ...] = ("patient_id", "encounter", "doc_type", "doc_timestamp")
OPTIONAL_GROUPS: tuple[str, ...] = ("institution",)

_TIMESTAMP = (
    "[0-9]{4}"  # year
    "(?:0[1-9]|1[0-2])"  # month
    "(?:0[1-9]|[12][0-9]|3[01])"  # day
    "(?:[01][0-9]|2[0-3])"  # hour
    "[0-5][0-9][0-5][0-9]"  # minute, second
)
DEFAULT_PATH_PATTERN = (
    r"(?P<institution>[^/]+)/(?P<patient_id>[^/]+)/(?P<encounter>[^/]+)/"
    rf"(?P<doc_type>[^/]+)_(?P<doc_timestamp>{_TIMESTAMP})\.(?i:txt)"
)
"""``INSTITUTION/PATIENT_ID/ENCOUNTER/DOCTYPE_YYYYMMDDHHMMSS.txt`` (``.txt`` in any case)."""

_LAYOUT = "INSTITUTION/PATIENT_ID/ENCOUNTER/DOCTYPE_YYYYMMDDHHMMSS.txt"


@dataclass(frozen=True)
class PathFields:
    """The fields of one document, from its path. ``doc_id`` is built by :func:`make_doc_id`."""

    institution: str | None
    patient_id: str
    encounter: str
    doc_type: str
    doc_timestamp: str
    doc_id: str


def make_doc_id(patient_id: str, encounter: str, doc_type: str, doc_timestamp: str) -> str:
    """``PATIENT_ID/ENCOUNTER/DOCTYPE_TIMESTAMP``, the key of a document (and of a pair).

    >>> make_doc_id("Patient_00000001", "2024-01-01", "入院记录", "20240101000000")
    'Patient_00000001/2024-01-01/入院记录_20240101000000'
    """
    return f"{patient_id}/{encounter}/{doc_type}_{doc_timestamp}"


@functools.lru_cache(maxsize=32)
def compile_path_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a ``pathPattern`` option value, checking it has the required named groups.

    >>> compile_path_pattern(r"(?P<patient_id>[^/]+)/(?P<doc_type>[^/]+)\\.txt")
    Traceback (most recent call last):
    ...
    iac_spark.errors.OptionError: pathPattern lacks the named group(s) encounter, doc_timestamp (required: patient_id, encounter, doc_type, doc_timestamp; optional: institution): '(?P<patient_id>[^/]+)/(?P<doc_type>[^/]+)\\\\.txt'
    """
    if not isinstance(pattern, str) or not pattern:
        raise OptionError(f"pathPattern must be a non-empty regular expression, got {pattern!r}")
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise OptionError(
            f"pathPattern is not a valid regular expression ({e}): {pattern!r}"
        ) from e
    missing = [g for g in REQUIRED_GROUPS if g not in compiled.groupindex]
    if missing:
        raise OptionError(
            f"pathPattern lacks the named group(s) {', '.join(missing)} "
            f"(required: {', '.join(REQUIRED_GROUPS)}; optional: {', '.join(OPTIONAL_GROUPS)}): "
            f"{pattern!r}"
        )
    return compiled


def path_fields(
    path: str,
    pattern: re.Pattern[str] | str = DEFAULT_PATH_PATTERN,
    where: str | None = None,
) -> PathFields:
    """The fields of the document at ``path`` (see the module docstring for the matching rule).

    ``where`` names the document in the error (``iac_spark.errors.location``); it
    defaults to ``path``.

    >>> path_fields("XJ\\\\P1\\\\2024-01-01\\\\病程记录_20240102083000.TXT").doc_id
    'P1/2024-01-01/病程记录_20240102083000'
    >>> path_fields("XJ/notes/readme.txt", where="/d/a.zip!XJ/notes/readme.txt")
    Traceback (most recent call last):
    ...
    iac_spark.text.errors.PathPatternMismatchError: /d/a.zip!XJ/notes/readme.txt: path 'XJ/notes/readme.txt' does not match pathPattern (INSTITUTION/PATIENT_ID/ENCOUNTER/DOCTYPE_YYYYMMDDHHMMSS.txt)
    """
    compiled = compile_path_pattern(pattern) if isinstance(pattern, str) else pattern
    name = path.rsplit("!", 1)[-1].replace("\\", "/")
    partial: list[str] = []
    for start in _component_starts(name):  # trailing runs of components, shortest first
        match = compiled.fullmatch(name[start:])
        if match is None:
            continue
        values = match.groupdict()
        empty = [g for g in REQUIRED_GROUPS if not values.get(g)]
        if not empty:
            break
        partial = partial or empty
    else:
        if partial:
            raise PathPatternMismatchError(
                f"{where or path}: path {name!r} matches pathPattern {_describe(compiled)} "
                f"only leaving {', '.join(partial)} empty"
            )
        raise PathPatternMismatchError(
            f"{where or path}: path {name!r} does not match pathPattern {_describe(compiled)}"
        )
    pid, enc, dtype, ts = (values[g] for g in REQUIRED_GROUPS)
    return PathFields(
        institution=values.get("institution") or None,
        patient_id=pid,
        encounter=enc,
        doc_type=dtype,
        doc_timestamp=ts,
        doc_id=make_doc_id(pid, enc, dtype, ts),
    )


def _component_starts(name: str) -> Iterator[int]:
    """Where each trailing run of ``/``-separated components of ``name`` starts, last first.

    >>> list(_component_starts("a/bc/d"))
    [5, 2, 0]
    """
    end = len(name)
    while True:
        slash = name.rfind("/", 0, end)
        yield slash + 1
        if slash < 0:
            return
        end = slash


def _describe(compiled: re.Pattern[str]) -> str:
    return f"({_LAYOUT})" if compiled.pattern == DEFAULT_PATH_PATTERN else repr(compiled.pattern)
