"""One pack task: turn its planned rows into records and write them into segments.

Runs wherever the executor puts it (a plain function, tested without a JVM). The task's rows
are an Arrow file written by the driver's plan; the result is a small picklable
:class:`TaskResult` (the commit message). A *record source* turns rows into records of the
pack's layout: for ``dicom_p10`` each row's member is read straight from its archive (the bytes
move once, never through the driver); members that cannot be read, or whose bytes no longer
match the scan, become pack-stage issues.

Example:
    >>> import tempfile, pyarrow as pa
    >>> from iac_spark.packing.plan import TaskPlan
    >>> from iac_spark.packing.layout import RecordCodec
    >>> d = tempfile.mkdtemp()
    >>> spec = PackTaskSpec(TaskPlan(0, "/nonexistent", 0, 0), d, "dicom_p10", RecordCodec.create("zstd"),
    ...                     dicom_members)
    >>> run_pack_task(spec, Attempt(0, 1)).segments
    []
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import pyarrow as pa

from ..errors import MemberError, error_text
from ..inputs.fetch import MemberReader
from .executor import Attempt, task_meter
from .layout import LAYOUTS, RecordCodec
from .plan import TaskPlan, read_task
from .shard import DEFAULT_SHARD_TARGET_BYTES, SegmentInfo, ShardWriter

__all__ = [
    "Issue",
    "PackTaskSpec",
    "PatientRecords",
    "Record",
    "RecordSource",
    "TaskResult",
    "dicom_members",
    "patient_runs",
    "run_pack_task",
]


@dataclass(frozen=True)
class Record:
    """One record for the shard writer: the layout's caller columns and the raw payload."""

    values: tuple[Any, ...]
    raw: bytes
    sources: tuple[str, ...]  # source path of every scanned member it packs (text: one per note)


@dataclass(frozen=True)
class Issue:
    """A member that could not be packed, with the reason (stage ``pack``)."""

    source_path: str
    source_member: str | None
    error: str


#: A patient's records (or issues), in pack order; the int is the patient's planned raw bytes.
PatientRecords: TypeAlias = tuple[int, Iterator[Record | Issue]]
RecordSource: TypeAlias = Callable[[pa.Table, "PackTaskSpec"], Iterator[PatientRecords]]


@dataclass(frozen=True)
class PackTaskSpec:
    """Everything a pack task needs (small and picklable)."""

    task: TaskPlan
    staging: str
    layout: str
    codec: RecordCodec
    source: RecordSource  # module-level function (pickled by reference)
    shard_target_bytes: int = DEFAULT_SHARD_TARGET_BYTES
    #: scan files the rows' ``_file`` column indexes (record sources that read scanned values)
    scan_files: tuple[str, ...] = ()
    #: layout settings (``dicom_patient``: ``jxl_effort``, ``fallback``), picklable pairs
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class TaskResult:
    """What one successful task attempt reports back to the driver."""

    task_id: int
    attempt_id: int
    segments: list[SegmentInfo] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    packed: dict[str, int] = field(default_factory=dict)  # scanned members packed, per source
    raw_bytes: int = 0


def patient_runs(rows: pa.Table) -> Iterator[tuple[int, int, int]]:
    """(start, stop, planned bytes) of each patient's run of rows (rows are sorted by patient)."""
    patients = rows.column("patient_id").to_pylist()
    sizes = rows.column("size").to_pylist()
    start = 0
    for i in range(1, len(patients) + 1):
        if i == len(patients) or patients[i] != patients[start]:
            yield start, i, sum(s or 0 for s in sizes[start:i])
            start = i


def dicom_members(rows: pa.Table, spec: PackTaskSpec) -> Iterator[PatientRecords]:
    """``dicom_p10``: one record per row, the member's original bytes read from its archive."""
    columns = [rows.column(c).to_pylist() for c in (
        "path", "member", "size", "crc32", "sop_instance_uid", "series_instance_uid",
        "study_instance_uid", "patient_id", "modality", "instance_number",
    )]  # fmt: skip
    with MemberReader() as reader:

        def records(start: int, stop: int) -> Iterator[Record | Issue]:
            for i in range(start, stop):
                path, member, size, crc, sop, series, study, pid, modality, inst = (
                    c[i] for c in columns
                )
                try:
                    data = reader.read(path, member, size, crc)
                except MemberError as exc:
                    yield Issue(path, member, error_text(exc))
                    continue
                values = (sop, series, study, pid, modality, inst, size, path, member)
                yield Record(values, data, (path,))

        for start, stop, planned in patient_runs(rows):
            yield planned, records(start, stop)


def run_pack_task(spec: PackTaskSpec, attempt: Attempt) -> TaskResult:
    """Pack the rows of one task into segments under ``spec.staging``."""
    layout = LAYOUTS[spec.layout]
    source = spec.source
    writer = ShardWriter(
        spec.staging, layout=layout, codec=spec.codec, task_id=spec.task.task_id,
        attempt_id=attempt.attempt_id, shard_target_bytes=spec.shard_target_bytes,
    )  # fmt: skip
    issues: list[Issue] = []
    packed: Counter[str] = Counter()
    raw = 0
    meter = task_meter()  # bytes done, for the driver's progress lines
    try:
        if os.path.exists(spec.task.path):
            rows = read_task(spec.task.path)
            for planned, items in source(rows, spec):
                first = True
                for item in items:
                    if isinstance(item, Issue):
                        issues.append(item)
                        continue
                    if first:
                        writer.starts_patient_fitting(planned)
                        first = False
                    writer.add(item.values, item.raw)
                    packed.update(item.sources)
                    raw += len(item.raw)
                    meter.add(len(item.raw))
        segments = writer.close()
    except BaseException:
        writer.abort()
        raise
    return TaskResult(spec.task.task_id, attempt.attempt_id, segments, issues, dict(packed), raw)
