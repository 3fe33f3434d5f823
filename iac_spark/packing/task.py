"""One pack task: read its members straight from the archives and write segments.

Runs on an executor (no Spark needed: it is a plain function, tested without a JVM).
The task's plan is a JSON file in staging written by the driver; the result is a
small picklable :class:`TaskResult` (the commit message). Members that cannot be
read, or whose bytes no longer match the scan, become pack-stage error records.

Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> spec = write_task_spec(d, 0, [])
    >>> run_task(spec, d, task_id=0, attempt_id=1).segments
    []
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ..errors import MemberError, error_text
from ..inputs.fetch import MemberReader
from .plan import ErrorRecord, RecordRef
from .shard import DEFAULT_SHARD_TARGET_BYTES, SegmentInfo, ShardWriter

__all__ = ["InjectedTaskFailure", "TaskResult", "run_task", "write_task_spec"]


class InjectedTaskFailure(RuntimeError):
    """Raised on purpose by tests (``_fail_task_attempts``) to prove retries leave no trace."""


@dataclass(frozen=True)
class TaskResult:
    """What one successful task attempt reports back to the driver."""

    task_id: int
    attempt_id: int
    segments: list[SegmentInfo] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    packed: int = 0
    raw_bytes: int = 0


def write_task_spec(staging: str, task_id: int, records: list[RecordRef]) -> str:
    """Write a task's sorted records to ``staging/plan/task-NNNNN.json``; returns the path."""
    plan_dir = os.path.join(staging, "plan")
    os.makedirs(plan_dir, exist_ok=True)
    path = os.path.join(plan_dir, f"task-{task_id:05d}.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"task_id": task_id, "records": [r.to_list() for r in records]}, fh)
    return path


def run_task(
    spec_path: str,
    staging: str,
    *,
    task_id: int,
    attempt_id: int,
    shard_target_bytes: int = DEFAULT_SHARD_TARGET_BYTES,
    zstd_level: int = 3,
    fail_after_writing: bool = False,
) -> TaskResult:
    """Pack the records of one task; ``fail_after_writing`` simulates a crash after the segments exist."""
    with open(spec_path, encoding="utf-8") as fh:
        records = [RecordRef.from_list(v) for v in json.load(fh)["records"]]
    patient_bytes: dict[str, int] = {}
    for r in records:
        patient_bytes[r.patient_id or ""] = patient_bytes.get(r.patient_id or "", 0) + r.size
    writer = ShardWriter(
        staging, task_id=task_id, attempt_id=attempt_id,
        shard_target_bytes=shard_target_bytes, zstd_level=zstd_level,
    )  # fmt: skip
    errors: list[ErrorRecord] = []
    packed = raw = 0
    current: str | None = None
    try:
        with MemberReader() as reader:
            for r in records:
                try:
                    data = reader.read(r.path, r.member, r.size, r.crc32)
                except MemberError as exc:
                    errors.append(ErrorRecord(r.path, r.member, "pack", error_text(exc)))
                    continue
                pid = r.patient_id or ""
                if pid != current:
                    writer.starts_patient_fitting(patient_bytes[pid])
                    current = pid
                writer.add(r, data)
                packed += 1
                raw += len(data)
        segments = writer.close()
    except BaseException:
        writer.abort()
        raise
    if fail_after_writing:
        raise InjectedTaskFailure(f"injected failure of task {task_id} attempt {attempt_id}")
    return TaskResult(task_id, attempt_id, segments, errors, packed, raw)
