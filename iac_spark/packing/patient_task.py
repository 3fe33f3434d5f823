"""The pack task of the ``dicom_patient`` layout: one pack per patient, built whole on the executor.

Where a ``dicom_p10`` task streams records into segments, a ``dicom_patient`` task hands each of
its patients' members to :func:`~iac_spark.packing.dicom_patient.build_patient_pack` (the
adapter's own builder), which writes one complete pack per patient under staging, named by task
attempt like every segment. Beside each pack it writes our index of its instances
(``<pack>.index.arrow``, the :data:`~iac_spark.packing.layout.DICOM_PATIENT` schema) for the
catalog, since the adapter owns the pack's own tables. The merge publishes every such pack by
rename, never concatenated.

Instances the layout cannot hold (undecodable or unstorable pixels, conflicting copies) become
pack-stage issues with the builder's reason, or, with the option ``fallback="dicom_p10"``,
records of a ``dicom_p10`` pack of the same run (their original bytes, byte-exact).

Example:
    >>> from iac_spark.packing.plan import TaskPlan
    >>> from iac_spark.packing.layout import RecordCodec
    >>> from iac_spark.packing.task import PackTaskSpec, dicom_members
    >>> import tempfile
    >>> spec = PackTaskSpec(TaskPlan(0, "/nonexistent", 0, 0), tempfile.mkdtemp(), "dicom_patient",
    ...                     RecordCodec.create("zstd"), dicom_members)
    >>> run_patient_task(spec, Attempt(0, 1)).segments
    []
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from dataclasses import replace
from typing import Any

import pyarrow as pa

from ..errors import BuildError, MemberError
from .executor import Attempt, task_meter
from .layout import DICOM_P10, DICOM_PATIENT
from .plan import read_task
from .shard import SegmentInfo, ShardWriter, file_crc32c
from .task import Issue, PackTaskSpec, TaskResult, patient_runs

__all__ = ["FALLBACKS", "run_patient_task"]

#: Where instances the layout cannot hold may go instead of an error row.
FALLBACKS = (None, "dicom_p10")

_COLUMNS = (
    "path", "member", "size", "crc32", "sop_instance_uid", "series_instance_uid",
    "study_instance_uid", "patient_id", "modality", "instance_number",
)  # fmt: skip


def _write_index(path: str, rows: list[dict[str, Any]]) -> str:
    schema = DICOM_PATIENT.index_schema
    table = pa.table({f.name: pa.array([r[f.name] for r in rows], f.type) for f in schema})
    index_path = path + ".index.arrow"
    with pa.OSFile(index_path, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(table)
    return index_path


def run_patient_task(spec: PackTaskSpec, attempt: Attempt) -> TaskResult:
    """Build one ``dicom_patient`` pack per patient of the task (see the module docstring)."""
    from ..inputs.fetch import MemberReader
    from .dicom_patient import DEFAULT_JXL_EFFORT, PatientMember, build_patient_pack

    options = dict(spec.options)
    effort = int(options.get("jxl_effort") or DEFAULT_JXL_EFFORT)
    fallback = options.get("fallback")
    task = spec.task.task_id
    segments: list[SegmentInfo] = []
    issues: list[Issue] = []
    packed: Counter[str] = Counter()
    raw = 0
    p10: ShardWriter | None = None
    if not os.path.exists(spec.task.path):
        return TaskResult(task, attempt.attempt_id)
    meter = task_meter()  # bytes done per patient, for the driver's progress lines
    rows = read_task(spec.task.path)
    cols = {c: rows.column(c).to_pylist() for c in _COLUMNS}
    with MemberReader() as reader:
        try:
            for seq, (start, stop, _planned) in enumerate(patient_runs(rows)):
                members = []
                for i in range(start, stop):
                    path, member, size, crc = (
                        cols[c][i] for c in ("path", "member", "size", "crc32")
                    )
                    members.append(
                        PatientMember(
                            path,
                            member,
                            functools.partial(reader.read, path, member, size, crc),
                            cols["sop_instance_uid"][i],
                            size,
                            crc,
                        )
                    )
                pid = cols["patient_id"][start] or ""
                target = os.path.join(
                    spec.staging, f"seg-t{task:05d}-a{attempt.attempt_id}-p{seq:05d}.iac"
                )
                result = build_patient_pack(target, members, jxl_effort=effort)
                # identical copies inside one patient: the plan already set those aside, so
                # this only happens for a copy the scan saw with other bytes than now
                for dup in result.duplicates:
                    text = f"DuplicateInstance: {dup.member.where} is identical to {dup.kept.where}"
                    issues.append(Issue(dup.member.source_path, dup.member.source_member, text))
                rejected = {
                    (r.member.source_path, r.member.source_member): r for r in result.rejected
                }
                if result.path is not None:
                    packed_rows = sorted(result.instances, key=lambda x: x.row)
                    if [x.row for x in packed_rows] != list(range(len(packed_rows))):
                        raise BuildError(f"{result.path}: the builder's rows are not 0..n-1")
                    index = [
                        {"sop_instance_uid": x.sop_instance_uid,
                         "series_instance_uid": x.series_instance_uid,
                         "study_instance_uid": x.study_instance_uid, "patient_id": pid,
                         "modality": x.modality, "instance_number": x.instance_number,
                         "raw_length": x.raw_length, "source_path": x.member.source_path,
                         "source_member": x.member.source_member, "offset": x.offset,
                         "length": x.length, "crc32": x.crc32}
                        for x in packed_rows
                    ]  # fmt: skip
                    segments.append(SegmentInfo(
                        path=result.path, task_id=task, attempt_id=attempt.attempt_id, seq=seq,
                        num_records=len(index), num_patients=1, data_bytes=result.data_bytes,
                        raw_bytes=sum(x.raw_length for x in result.instances), first_patient=pid,
                        last_patient=pid, continues=False, layout=DICOM_PATIENT.name,
                        index_path=_write_index(result.path, index),
                        file_crc32c=file_crc32c(result.path),  # still in the page cache
                    ))  # fmt: skip
                    packed.update(x.member.source_path for x in result.instances)
                    raw += sum(x.raw_length for x in result.instances)
                meter.add(sum(cols["size"][i] or 0 for i in range(start, stop)))
                for i in range(start, stop):
                    key = (cols["path"][i], cols["member"][i])
                    r = rejected.get(key)
                    if r is None:
                        continue
                    data = None
                    if fallback == "dicom_p10":
                        try:
                            data = r.member.read()
                        except MemberError:  # unreadable: it stays an error row
                            data = None
                    if data is not None:
                        if p10 is None:
                            p10 = ShardWriter(spec.staging, layout=DICOM_P10, codec=spec.codec,
                                              task_id=task, attempt_id=attempt.attempt_id,
                                              shard_target_bytes=spec.shard_target_bytes)  # fmt: skip
                        values = (*(cols[c][i] for c in _COLUMNS[4:]), cols["size"][i],
                                  cols["path"][i], cols["member"][i])  # fmt: skip
                        p10.add(values, data)
                        packed[cols["path"][i]] += 1
                        raw += len(data)
                    else:
                        issues.append(Issue(key[0], key[1], r.reason))
            if p10 is not None:
                segments += [replace(s, layout=DICOM_P10.name) for s in p10.close()]
        except BaseException:
            if p10 is not None:
                p10.abort()
            raise
    return TaskResult(task, attempt.attempt_id, segments, issues, dict(packed), raw)
