"""The scan phase of a build: scan tasks write their rows to staging, the driver reads columns back.

A scan task runs :func:`~iac_spark.inputs.scan.scan_unit` over its units with the build's
parser and writes every row (``ok`` and ``error``; skipped members are only counted) to one
Arrow IPC file ``<staging>/scan/scan-NNNNN-a<attempt>.arrow``. Its result carries the file's
name and the exact per-source member counts, nested zips included. The driver then reads only
the columns it plans with (:func:`read_scan_columns`, memory-mapped), so it never holds the
rows — or their ``meta`` JSON — as Python objects; the catalog commit reads the attribute
columns back from the same files.

Example:
    >>> import functools, tempfile, zipfile, os
    >>> from pydicom.data import get_testdata_file
    >>> from iac_spark.dicom.rows import DicomParser
    >>> d = tempfile.mkdtemp(); z = os.path.join(d, "a.zip")
    >>> with zipfile.ZipFile(z, "w") as zf:
    ...     zf.write(get_testdata_file("CT_small.dcm"), "ct.dcm"); zf.writestr("LICENSE.txt", "x")
    >>> spec = ScanTaskSpec((ScanUnit(z, "zip"),), functools.partial(DicomParser, meta=False), d)
    >>> result = run_scan_task(spec, Attempt(0, 3))
    >>> result.rows, result.counts[z].skipped, os.path.basename(result.path)
    (1, 1, 'scan-00000-a3.arrow')
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..inputs.limits import InputLimits
from ..inputs.plan import ScanUnit
from ..inputs.scan import (
    MemberParser,
    ScanStats,
    SourceCounts,
    rows_to_batch,
    scan_schema,
    scan_unit,
)
from .executor import Attempt

__all__ = ["ScanTaskResult", "ScanTaskSpec", "read_scan_columns", "run_scan_task"]

_BATCH_ROWS = 2048


@dataclass(frozen=True)
class ScanTaskSpec:
    """Units to scan, a picklable parser factory, where the rows go and the input limits."""

    units: tuple[ScanUnit, ...]
    parser: Callable[[], MemberParser]
    out_dir: str
    role: str = "source"  # "compressed": the teacher-compressed notes of a pair build
    limits: InputLimits = field(default_factory=InputLimits)


@dataclass(frozen=True)
class ScanTaskResult:
    """One scan task's commit message: its rows file and exact counts per source."""

    task_id: int
    attempt_id: int
    path: str
    rows: int
    counts: dict[str, SourceCounts] = field(default_factory=dict)
    role: str = "source"


def run_scan_task(spec: ScanTaskSpec, attempt: Attempt) -> ScanTaskResult:
    """Scan ``spec.units`` into ``<out_dir>/scan-NNNNN-a<attempt>.arrow`` (PERMISSIVE)."""
    parser = spec.parser()
    schema = scan_schema(parser)
    os.makedirs(spec.out_dir, exist_ok=True)
    path = os.path.join(spec.out_dir, f"scan-{attempt.task_id:05d}-a{attempt.attempt_id}.arrow")
    stats = ScanStats()
    n = 0
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        rows: list[tuple[Any, ...]] = []
        for unit in spec.units:
            for row in scan_unit(unit, parser, stats=stats, limits=spec.limits):
                rows.append(row)
                if len(rows) >= _BATCH_ROWS:
                    writer.write_batch(rows_to_batch(rows, schema))
                    n += len(rows)
                    rows = []
        if rows:
            writer.write_batch(rows_to_batch(rows, schema))
            n += len(rows)
    return ScanTaskResult(attempt.task_id, attempt.attempt_id, path, n, stats.counts, spec.role)


def read_scan_columns(paths: Sequence[str], columns: Sequence[str]) -> pa.Table:
    """``columns`` of the scan files, concatenated, plus ``_file`` (index into ``paths``) and
    ``_row`` (row within that file). Memory-mapped: untouched columns are never read."""
    tables = []
    for i, path in enumerate(paths):
        t = pa.ipc.open_file(pa.memory_map(path)).read_all().select(list(columns))
        t = t.append_column("_file", pa.array([i] * t.num_rows, pa.int32()))
        t = t.append_column("_row", pa.array(range(t.num_rows), pa.int32()))
        tables.append(t)
    if not tables:
        raise ValueError("no scan files to read")
    return pa.concat_tables(tables).combine_chunks()
