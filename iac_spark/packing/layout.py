"""Pack layouts (contract, DESIGN.md "Packs"): header, slide table, index columns, paths.

A :class:`Layout` is what the shard writer and the merge need to know about a payload:
its ``payload_type``, the caller columns of its index table (the writer appends the
container's ``offset``/``length``/``crc32``) and how the slide table is derived from the index.

* ``dicom_p10``: one record = one instance's original file bytes; one slide row per series.
* ``clinical_text`` / ``clinical_text_pair``: one record = one patient (the layouts of
  ``iatro.iac.adapters.text`` / ``text_pair``); a single placeholder slide row, as the
  adapters write it.

Example:
    >>> [f.name for f in DICOM_P10.index_schema][:3]
    ['slide_idx', 'sop_instance_uid', 'series_instance_uid']
    >>> DICOM_P10.header(RecordCodec.create("zstd", level=3))["payload_type"]
    'dicom_p10'
    >>> sorted(LAYOUTS)
    ['clinical_text', 'clinical_text_pair', 'dicom_p10', 'dicom_patient']
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from iatro.iac import Codec

__all__ = [
    "CLINICAL_TEXT",
    "CLINICAL_TEXT_PAIR",
    "CONTAINER_COLUMNS",
    "DICOM_P10",
    "DICOM_PATIENT",
    "INDEX_SCHEMA",
    "LAYOUTS",
    "SLIDE_SCHEMA",
    "Layout",
    "RecordCodec",
    "pack_path",
    "packs_dir",
    "slide_table",
    "staging_dir",
]

#: Index columns the container needs, appended by the shard writer to every layout's columns.
CONTAINER_COLUMNS = pa.schema(
    [("offset", pa.uint64()), ("length", pa.uint32()), ("crc32", pa.uint32())]
)


@dataclass(frozen=True)
class RecordCodec:
    """The record codec of a pack: ``iatro.iac.Codec`` plus its header fields.

    >>> RecordCodec.create("zstd", level=3).header_fields()
    {'codec': 'zstd', 'codec_params': {'level': 3}}
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, name: str, **params: Any) -> RecordCodec:
        return cls(name, dict(params))

    def codec(self) -> Codec:
        """The ``iatro.iac`` codec (made per task: native codecs are not picklable)."""
        return Codec.create(self.name, **self.params)

    def header_fields(self) -> dict[str, Any]:
        params = dict(self.codec().parameters())
        return {"codec": self.name, **({"codec_params": params} if params else {})}


#: ``dicom_p10`` index table: caller columns then the container's offset/length/crc32.
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
        *CONTAINER_COLUMNS,
    ]
)

#: ``dicom_p10`` slide table: one row per series.
SLIDE_SCHEMA = pa.schema(
    [
        ("slide_idx", pa.int32()),
        ("slide_id", pa.string()),
        ("patient_id", pa.string()),
        ("study_instance_uid", pa.string()),
        ("modality", pa.string()),
    ]
)


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


def _placeholder_slides(slide_id: str) -> Callable[[pa.Table], tuple[pa.Table, pa.Array | None]]:
    def slides(index_rows: pa.Table) -> tuple[pa.Table, pa.Array | None]:
        table = pa.table(
            {
                "slide_idx": pa.array([0], type=pa.uint8()),
                "slide_id": [slide_id],
                "patient_id": [""],
            }
        )
        return table, None

    return slides


@dataclass(frozen=True)
class Layout:
    """A pack layout: what the shard writer and the merge need to build and concatenate packs."""

    name: str
    index_schema: pa.Schema  # full index schema, container columns last
    slides: Callable[[pa.Table], tuple[pa.Table, pa.Array | None]]
    extra_header: dict[str, Any] = field(default_factory=dict)
    #: True when the slide table is derived per pack and ``slide_idx`` is index column 0
    has_slide_idx: bool = False
    #: False for layouts built whole by their adapter (one pack per segment, never concatenated);
    #: their segments carry our index in a sidecar file (``SegmentInfo.index_path``)
    mergeable: bool = True

    @property
    def payload_type(self) -> str:
        return self.name

    @property
    def caller_schema(self) -> pa.Schema:
        """The index columns a record source supplies (``slide_idx`` and container columns excluded)."""
        skip = {"slide_idx", *CONTAINER_COLUMNS.names}
        return pa.schema([f for f in self.index_schema if f.name not in skip])

    def header(self, codec: RecordCodec) -> dict[str, Any]:
        """Header fields we set; the container adds the layout fields (offsets, counts)."""
        return {"payload_type": self.payload_type, **codec.header_fields(), **self.extra_header}

    def tables(self, caller: pa.Table) -> tuple[pa.Table, pa.Table]:
        """(slide table, full index table without container columns) for one pack's rows."""
        slides, slide_idx = self.slides(caller)
        if self.has_slide_idx:
            assert slide_idx is not None
            caller = caller.add_column(0, "slide_idx", slide_idx)
        return slides, caller


def _slides_dicom(index_rows: pa.Table) -> tuple[pa.Table, pa.Array | None]:
    return slide_table(index_rows)


DICOM_P10 = Layout("dicom_p10", INDEX_SCHEMA, _slides_dicom, has_slide_idx=True)

CLINICAL_TEXT = Layout(
    "clinical_text",
    pa.schema(
        [
            ("patient_id", pa.string()),
            ("institution", pa.string()),
            ("num_docs", pa.uint32()),
            ("raw_length", pa.uint64()),
            *CONTAINER_COLUMNS,
        ]
    ),
    _placeholder_slides("clinical_text"),
    extra_header={"text_schema_version": 1},
)

CLINICAL_TEXT_PAIR = Layout(
    "clinical_text_pair",
    pa.schema(
        [
            ("patient_id", pa.string()),
            ("institution", pa.string()),
            ("num_docs", pa.uint32()),
            ("source_raw_bytes", pa.uint64()),
            ("compressed_raw_bytes", pa.uint64()),
            ("raw_length", pa.uint64()),
            *CONTAINER_COLUMNS,
        ]
    ),
    _placeholder_slides("clinical_text_pair"),
    extra_header={"pair_schema_version": 1},
)

#: ``dicom_patient`` (``iatro.iac.adapters.dicom``): one patient per pack, built whole by the
#: adapter's builder on the executor (:mod:`iac_spark.packing.patient_task`); the schema below is
#: our per-instance index of such a pack (kept beside it, not inside: the adapter owns its tables).
DICOM_PATIENT = Layout(
    "dicom_patient",
    pa.schema([f for f in INDEX_SCHEMA if f.name != "slide_idx"]),
    _placeholder_slides("dicom_patient"),
    mergeable=False,
)

LAYOUTS: dict[str, Layout] = {
    layout.name: layout for layout in (DICOM_P10, DICOM_PATIENT, CLINICAL_TEXT, CLINICAL_TEXT_PAIR)
}


def packs_dir(out: str, dataset: str) -> str:
    """``OUT/packs/<dataset>``."""
    return os.path.join(out, "packs", dataset)


def pack_path(out: str, dataset: str, pack_id: str) -> str:
    """``OUT/packs/<dataset>/<pack_id>.iac``."""
    return os.path.join(packs_dir(out, dataset), f"{pack_id}.iac")


def staging_dir(out: str, run_id: str) -> str:
    """``OUT/_staging/<run_id>``: files of a running build."""
    return os.path.join(out, "_staging", run_id)
