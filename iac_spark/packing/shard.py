"""Executor side: stream a task's records into pack segments of bounded size.

Each record is encoded by the pack's record codec and appended to a spool file; only the
small index rows stay in memory, so memory is bounded by one record plus the index, not by
the task. When the next record would push the stored bytes past ``shard_target_bytes`` the
segment is closed: written as a complete pack with
``iatro.iac.build_pack_data_segment_from_file`` under ``OUT/_staging/<run_id>/``, named by
task and attempt so two attempts never write the same path. A new patient also starts a new
segment when its planned size would not fit, so segments hold whole patients unless one
patient alone is larger than the target (``SegmentInfo.continues`` marks that).

The writer is layout-agnostic: a record is the tuple of its layout's caller index columns
(:attr:`~iac_spark.packing.layout.Layout.caller_schema`) plus its raw bytes.

Example:
    >>> import tempfile
    >>> from iac_spark.packing.layout import DICOM_P10, RecordCodec
    >>> w = ShardWriter(tempfile.mkdtemp(), layout=DICOM_P10, codec=RecordCodec.create("zstd", level=3),
    ...                 task_id=0, attempt_id=7)
    >>> stored = w.add(("1.2", "s", "t", "P", "CT", 1, 3, "/a.zip", "1.dcm"), b"abc"); segs = w.close()
    >>> segs[0].num_records, segs[0].raw_bytes, segs[0].path.endswith("seg-t00000-a7-0000.iac")
    (1, 3, True)
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import google_crc32c
import pyarrow as pa
from iatro.iac import build_pack_data_segment_from_file

from .layout import Layout, RecordCodec

__all__ = ["DEFAULT_SHARD_TARGET_BYTES", "SegmentInfo", "ShardWriter", "file_crc32c"]

DEFAULT_SHARD_TARGET_BYTES = 256 * 1024**2

_CRC_CHUNK = 128 * 1024  # small: a segment's flush stays within its memory bound


def file_crc32c(path: str) -> int:
    """CRC-32C (Castagnoli) of the whole file at ``path``, streamed in 128 KiB chunks.

    ``google-crc32c`` computes it with the CPU's CRC32 instruction: a file streams through it
    at about 2.8 GB/s on one core here (page cache), against 0.9 GB/s for ``zlib.crc32`` and
    0.5 GB/s for SHA-256; it is also the checksum cloud object stores keep per object (GCS,
    S3 ``ChecksumCRC32C``).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     _ = f.write(b"123456789"); f.flush()
    ...     f"{file_crc32c(f.name):08x}"
    'e3069283'
    """
    crc = 0
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(_CRC_CHUNK):
            crc = google_crc32c.extend(crc, chunk)
    return int(crc)


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
    layout: str = ""  # set for segments of another layout than the build's (a fallback)
    index_path: str | None = None  # our index of a non-mergeable layout's pack (Arrow file)
    file_crc32c: int | None = None  # CRC-32C of the segment file (kept when published by rename)


class ShardWriter:
    """Write one task attempt's records (already sorted by patient) into segments."""

    def __init__(
        self,
        staging: str,
        *,
        layout: Layout,
        codec: RecordCodec,
        task_id: int,
        attempt_id: int,
        shard_target_bytes: int = DEFAULT_SHARD_TARGET_BYTES,
    ) -> None:
        self.staging = staging
        self.layout = layout
        self.codec = codec
        self.task_id = task_id
        self.attempt_id = attempt_id
        self.target = shard_target_bytes
        self._schema = layout.caller_schema
        self._patient_col = self._schema.get_field_index("patient_id")
        self._encode = codec.codec().encode
        self._header = layout.header(codec)
        self._segments: list[SegmentInfo] = []
        self._seq = 0
        self._spool: IO[bytes] | None = None
        self._reset()

    def _name(self, ext: str) -> str:
        return os.path.join(
            self.staging, f"seg-t{self.task_id:05d}-a{self.attempt_id}-{self._seq:04d}{ext}"
        )

    def _reset(self) -> None:
        self._rows: list[Sequence[Any]] = []
        self._offsets: list[int] = []
        self._lengths: list[int] = []
        self._crcs: list[int] = []
        self._stored = 0
        self._raw = 0
        self._patients = 0
        self._spool_path = self._name(".data")

    def _last_patient(self) -> str:
        return self._rows[-1][self._patient_col] or "" if self._rows else ""

    def starts_patient_fitting(self, planned_bytes: int) -> None:
        """Call before a new patient's first record with its planned raw size (an upper bound
        on its stored size, give or take a codec's few bytes of framing): cuts the segment
        first if the patient would not fit."""
        if self._rows and self._stored + planned_bytes > self.target:
            self._flush(continues=False)

    def add(self, values: Sequence[Any], raw: bytes) -> int:
        """Encode and append one record (``values``: the layout's caller columns); returns its stored size."""
        stored = self._encode(raw)
        patient = values[self._patient_col] or ""
        if self._rows and self._stored + len(stored) > self.target:
            self._flush(continues=self._last_patient() == patient)
        if self._spool is None:
            self._spool = open(self._spool_path, "wb")  # noqa: SIM115 - closed in _flush
        if not self._rows or self._last_patient() != patient:
            self._patients += 1
        self._spool.write(stored)
        self._rows.append(values)
        self._offsets.append(self._stored)
        self._lengths.append(len(stored))
        self._crcs.append(zlib.crc32(stored))
        self._stored += len(stored)
        self._raw += len(raw)
        return len(stored)

    def _flush(self, *, continues: bool) -> None:
        if not self._rows:
            return
        assert self._spool is not None
        self._spool.close()
        self._spool = None
        rows = self._rows
        columns = list(zip(*rows, strict=True))
        caller = pa.table(
            [pa.array(c, type=f.type) for c, f in zip(columns, self._schema, strict=True)],
            schema=self._schema,
        )
        slides, index = self.layout.tables(caller)
        index = index.append_column("offset", pa.array(self._offsets, pa.uint64()))
        index = index.append_column("length", pa.array(self._lengths, pa.uint32()))
        index = index.append_column("crc32", pa.array(self._crcs, pa.uint32()))
        target = self._name(".iac")
        build_pack_data_segment_from_file(
            target, self._header, slides, index, self._spool_path, data_length=self._stored
        )
        os.remove(self._spool_path)
        crc = file_crc32c(target)  # read back while the file is hot in the page cache
        self._segments.append(
            SegmentInfo(
                path=target, task_id=self.task_id, attempt_id=self.attempt_id, seq=self._seq,
                num_records=len(rows), num_patients=self._patients, data_bytes=self._stored,
                raw_bytes=self._raw, first_patient=rows[0][self._patient_col] or "",
                last_patient=self._last_patient(), continues=continues, file_crc32c=crc,
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
