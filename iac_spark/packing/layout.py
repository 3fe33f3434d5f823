"""The DICOM pack layout (contract): header, slide table per series, index table columns.

Example:
    >>> [f.name for f in INDEX_SCHEMA][:3]
    ['slide_idx', 'sop_instance_uid', 'series_instance_uid']
    >>> pack_header(3)["payload_type"], pack_header(3)["codec"]
    ('dicom_p10', 'zstd')
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa

__all__ = [
    "INDEX_SCHEMA",
    "PAYLOAD_TYPE",
    "SLIDE_SCHEMA",
    "pack_header",
    "pack_path",
    "packs_dir",
    "slide_table",
    "staging_dir",
]

PAYLOAD_TYPE = "dicom_p10"

#: Index table: caller columns then the container's offset/length/crc32 of the stored bytes.
INDEX_SCHEMA = pa.schema(
    [
        ("slide_idx", pa.int32()),
        ("sop_instance_uid", pa.string()),
        ("series_instance_uid", pa.string()),
        ("study_instance_uid", pa.string()),
        ("patient_id", pa.string()),
        ("modality", pa.string()),
        ("instance_number", pa.int32()),
        ("raw_length", pa.uint64()),
        ("source_path", pa.string()),
        ("source_member", pa.string()),
        ("offset", pa.uint64()),
        ("length", pa.uint32()),
        ("crc32", pa.uint32()),
    ]
)

#: Slide table: one row per series.
SLIDE_SCHEMA = pa.schema(
    [
        ("slide_idx", pa.int32()),
        ("slide_id", pa.string()),
        ("patient_id", pa.string()),
        ("study_instance_uid", pa.string()),
        ("modality", pa.string()),
    ]
)


def pack_header(level: int) -> dict[str, Any]:
    """Header fields we set; the container adds the layout fields (offsets, counts)."""
    return {"payload_type": PAYLOAD_TYPE, "codec": "zstd", "codec_params": {"level": int(level)}}


def packs_dir(out: str, dataset: str) -> str:
    """``OUT/packs/<dataset>``."""
    return os.path.join(out, "packs", dataset)


def pack_path(out: str, dataset: str, pack_id: str) -> str:
    """``OUT/packs/<dataset>/<pack_id>.iac``."""
    return os.path.join(packs_dir(out, dataset), f"{pack_id}.iac")


def staging_dir(out: str, run_id: str) -> str:
    """``OUT/_staging/<run_id>``: segments of a running build."""
    return os.path.join(out, "_staging", run_id)


def slide_table(index_rows: pa.Table) -> tuple[pa.Table, pa.Array]:
    """Slide table (one row per series, first-seen order) and the ``slide_idx`` column for ``index_rows``.

    ``index_rows`` needs series_instance_uid, patient_id, study_instance_uid, modality.
    """
    series = index_rows.column("series_instance_uid").to_pylist()
    patients = index_rows.column("patient_id").to_pylist()
    studies = index_rows.column("study_instance_uid").to_pylist()
    modalities = index_rows.column("modality").to_pylist()
    seen: dict[tuple[str | None, str | None], int] = {}
    rows: list[tuple[Any, ...]] = []
    idx: list[int] = []
    for s, p, st, m in zip(series, patients, studies, modalities, strict=True):
        key = (p, s)
        i = seen.get(key)
        if i is None:
            i = seen[key] = len(rows)
            rows.append((i, s, p, st, m))
        idx.append(i)
    cols: list[Any] = list(zip(*rows, strict=True)) if rows else [[] for _ in SLIDE_SCHEMA]
    table = pa.table(
        [pa.array(c, type=f.type) for c, f in zip(cols, SLIDE_SCHEMA, strict=True)],
        schema=SLIDE_SCHEMA,
    )
    return table, pa.array(idx, type=pa.int32())
