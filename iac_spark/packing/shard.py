"""Executor side: stream a task's records into pack segments of bounded size.

Each record is zstd-compressed and appended to a spool file; only the small index
rows stay in memory, so memory is bounded by one record plus the index, not by the
partition. When the next record would push the stored bytes past
``shard_target_bytes`` the segment is closed: written as a complete pack with
``iatro.iac.build_pack_data_segment_from_file`` under ``OUT/_staging/<run_id>/``,
named by task and attempt so two attempts never write the same path. A new patient
also starts a new segment when its planned size would not fit, so segments hold
whole patients unless one patient alone is larger than the target
(``SegmentInfo.continues`` marks that).

Example:
    >>> import tempfile
    >>> from iac_spark.packing.plan import RecordRef
    >>> ref = RecordRef("/a.zip", "1.dcm", 3, 0, "1.2", "s", "t", "P", "CT", 1)
    >>> w = ShardWriter(tempfile.mkdtemp(), task_id=0, attempt_id=7)
    >>> w.add(ref, b"abc"); segs = w.close()
    >>> segs[0].num_records, segs[0].raw_bytes
    (1, 3)
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import IO

import pyarrow as pa
import zstandard
from iatro.iac import build_pack_data_segment_from_file

from .layout import INDEX_SCHEMA, pack_header, slide_table
from .plan import RecordRef

__all__ = ["DEFAULT_SHARD_TARGET_BYTES", "SegmentInfo", "ShardWriter"]

DEFAULT_SHARD_TARGET_BYTES = 256 * 1024**2


@dataclass(frozen=True)
class SegmentInfo:
    """Descriptor of one written segment: all the commit message carries."""

    path: str
    task_id: int
    attempt_id: int
    seq: int
    num_records: int
    num_patients: int
    data_bytes: int
    raw_bytes: int
    first_patient: str
    last_patient: str
    continues: bool  # the last patient goes on in segment seq+1 of the same task


class ShardWriter:
    """Write one task attempt's records (already sorted) into segments."""

    def __init__(
        self,
        staging: str,
        *,
        task_id: int,
        attempt_id: int,
        shard_target_bytes: int = DEFAULT_SHARD_TARGET_BYTES,
        zstd_level: int = 3,
    ) -> None:
        self.staging = staging
        self.task_id = task_id
        self.attempt_id = attempt_id
        self.target = shard_target_bytes
        self.level = zstd_level
        self._compressor = zstandard.ZstdCompressor(level=zstd_level, write_content_size=True)
        self._segments: list[SegmentInfo] = []
        self._seq = 0
        self._spool: IO[bytes] | None = None
        self._reset()

    def _name(self, ext: str) -> str:
        return os.path.join(
            self.staging, f"seg-t{self.task_id:05d}-a{self.attempt_id}-{self._seq:04d}{ext}"
        )

    def _reset(self) -> None:
        self._rows: list[RecordRef] = []
        self._offsets: list[int] = []
        self._lengths: list[int] = []
        self._crcs: list[int] = []
        self._stored = 0
        self._raw = 0
        self._patients = 0
        self._spool_path = self._name(".data")

    def starts_patient_fitting(self, planned_bytes: int) -> None:
        """Call before a new patient's first record with its planned raw size (an upper bound
        on its stored size, give or take zstd's few bytes of framing): cuts the segment
        first if the patient would not fit."""
        if self._rows and self._stored + planned_bytes > self.target:
            self._flush(continues=False)

    def add(self, ref: RecordRef, raw: bytes) -> None:
        """Compress and append one record."""
        stored = self._compressor.compress(raw)
        if self._rows and self._stored + len(stored) > self.target:
            same = (self._rows[-1].patient_id or "") == (ref.patient_id or "")
            self._flush(continues=same)
        if self._spool is None:
            self._spool = open(self._spool_path, "wb")  # noqa: SIM115 - closed in _flush
        if not self._rows or (self._rows[-1].patient_id or "") != (ref.patient_id or ""):
            self._patients += 1
        self._spool.write(stored)
        self._rows.append(ref)
        self._offsets.append(self._stored)
        self._lengths.append(len(stored))
        self._crcs.append(zlib.crc32(stored))
        self._stored += len(stored)
        self._raw += len(raw)

    def _flush(self, *, continues: bool) -> None:
        if not self._rows:
            return
        assert self._spool is not None
        self._spool.close()
        self._spool = None
        rows = self._rows
        cols = {
            "sop_instance_uid": [r.sop_instance_uid for r in rows],
            "series_instance_uid": [r.series_instance_uid for r in rows],
            "study_instance_uid": [r.study_instance_uid for r in rows],
            "patient_id": [r.patient_id for r in rows],
            "modality": [r.modality for r in rows],
        }
        meta = pa.table({k: pa.array(v, type=pa.string()) for k, v in cols.items()})
        slides, slide_idx = slide_table(meta)
        index = pa.table(
            [
                slide_idx,
                *(meta.column(k) for k in cols),
                pa.array([r.instance_number for r in rows], type=pa.int32()),
                pa.array([r.size for r in rows], type=pa.uint64()),
                pa.array([r.path for r in rows], type=pa.string()),
                pa.array([r.member for r in rows], type=pa.string()),
                pa.array(self._offsets, type=pa.uint64()),
                pa.array(self._lengths, type=pa.uint32()),
                pa.array(self._crcs, type=pa.uint32()),
            ],
            schema=INDEX_SCHEMA,
        )
        target = self._name(".iac")
        build_pack_data_segment_from_file(
            target,
            pack_header(self.level),
            slides,
            index,
            self._spool_path,
            data_length=self._stored,
        )
        os.remove(self._spool_path)
        self._segments.append(
            SegmentInfo(
                path=target, task_id=self.task_id, attempt_id=self.attempt_id, seq=self._seq,
                num_records=len(rows), num_patients=self._patients, data_bytes=self._stored,
                raw_bytes=self._raw, first_patient=rows[0].patient_id or "",
                last_patient=rows[-1].patient_id or "", continues=continues,
            )
        )  # fmt: skip
        self._seq += 1
        self._reset()

    def close(self) -> list[SegmentInfo]:
        """Flush the last segment and return the descriptors of all segments written."""
        self._flush(continues=False)
        return list(self._segments)

    def abort(self) -> None:
        """Remove the open spool file (written segments are left for the driver's cleanup)."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if os.path.exists(self._spool_path):
            os.remove(self._spool_path)
