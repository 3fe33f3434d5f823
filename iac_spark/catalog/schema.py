"""Arrow schemas of the six catalog tables (the catalog contract, DESIGN.md "Catalog").

The schemas are deliberately plain so that delta-rs, Spark Delta, DuckDB and Polars
all read the tables: signed integers only (Delta has no unsigned types; ``crc32`` and
``offset`` fit in ``int64``), UTC timestamps ``timestamp[us, tz=UTC]`` (Delta
``timestamp``), strings and booleans. No VARIANT, no partitioning, no deletion vectors.
Every column is nullable, which is what Spark writes anyway.

Example:
    >>> [f.name for f in SCHEMAS["runs"]][:3]
    ['run_id', 'dataset', 'started_at']
    >>> str(RECORDS_SCHEMA.field("crc32").type), str(RUNS_SCHEMA.field("committed_at").type)
    ('int64', 'timestamp[us, tz=UTC]')
"""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa

from ..dicom.rows import CONTRACT_SCHEMA, PROMOTED_SCHEMA

__all__ = [
    "ATTRIBUTE_COLUMNS",
    "DOCUMENTS_SCHEMA",
    "ERRORS_SCHEMA",
    "PACKS_SCHEMA",
    "RECORDS_SCHEMA",
    "RUNS_SCHEMA",
    "SCHEMAS",
    "SOURCES_SCHEMA",
    "TABLES",
    "TIMESTAMP",
    "TableName",
    "conform",
    "empty_table",
    "to_table",
]

TableName = Literal["packs", "records", "documents", "sources", "errors", "runs"]

#: Table names, in commit order (``runs`` last: it is the commit point).
TABLES: tuple[TableName, ...] = ("records", "documents", "sources", "errors", "packs", "runs")

#: The one timestamp type of the catalog.
TIMESTAMP = pa.timestamp("us", tz="UTC")

_S, _I64, _I32, _B, _F64 = pa.string(), pa.int64(), pa.int32(), pa.bool_(), pa.float64()

PACKS_SCHEMA = pa.schema(
    [
        ("pack_id", _S),
        ("dataset", _S),
        ("path", _S),  # relative to OUT (POSIX separators), so a catalog can be moved
        ("payload_type", _S),
        ("codec", _S),
        ("num_records", _I64),
        ("num_patients", _I64),
        ("num_series", _I64),
        ("data_bytes", _I64),
        ("file_bytes", _I64),
        # CRC-32C of the whole pack file, as published (null in catalogs made before it existed)
        ("file_crc32c", _I64),
        ("run_id", _S),
        ("created_at", TIMESTAMP),
    ]
)

#: The DICOM attributes of ``records``, in contract order (DESIGN.md "Catalog").
_ATTRIBUTES = (
    "study_date", "series_number", "study_description", "series_description",
    "body_part_examined", "patient_sex", "patient_age", "manufacturer", "manufacturer_model_name",
    "slice_thickness", "spacing_between_slices", "pixel_spacing", "image_position_patient",
    "image_orientation_patient", "rows", "columns", "number_of_frames", "bits_allocated",
    "photometric_interpretation", "transfer_syntax_uid", "sop_class_uid", "image_type", "meta",
)  # fmt: skip


def _attributes() -> list[pa.Field]:
    """The attribute fields with the scan's types (one definition: :mod:`iac_spark.dicom.rows`)."""
    scan = {f.name: f.type for f in (*CONTRACT_SCHEMA, *PROMOTED_SCHEMA)}
    return [pa.field(name, scan[name]) for name in _ATTRIBUTES]


RECORDS_SCHEMA = pa.schema(
    [
        ("pack_id", _S),
        ("row", _I64),
        ("sop_instance_uid", _S),
        ("series_instance_uid", _S),
        ("study_instance_uid", _S),
        ("patient_id", _S),
        ("modality", _S),
        ("instance_number", _I32),
        ("offset", _I64),
        ("length", _I64),
        ("crc32", _I64),  # CRC-32 of the stored (zstd) bytes, as in the pack index
        ("raw_length", _I64),
        ("raw_crc32", _I64),  # CRC-32 of the original member bytes
        ("source_path", _S),
        ("source_member", _S),
        ("run_id", _S),
        ("retired", _B),
        ("retired_by_run", _S),
        # promoted DICOM attributes and meta (null where absent or invalid; null for text
        # records), typed as the scan defines them
        *_attributes(),
    ]
)

#: Promoted ``records`` columns that come from the scan (not from the pack index).
ATTRIBUTE_COLUMNS: tuple[str, ...] = _ATTRIBUTES

DOCUMENTS_SCHEMA = pa.schema(
    [
        ("pack_id", _S),
        ("row", _I64),  # the patient record holding the document
        ("patient_id", _S),
        ("institution", _S),
        ("doc_id", _S),
        ("doc_type", _S),
        ("encounter", _S),
        ("doc_timestamp", _S),
        ("n_chars", _I64),
        ("encoding", _S),
        ("source_path", _S),
        ("source_member", _S),
        ("raw_crc32", _I64),
        ("run_id", _S),
        ("retired", _B),
        ("retired_by_run", _S),
    ]
)

SOURCES_SCHEMA = pa.schema(
    [
        ("source_path", _S),
        ("size", _I64),
        ("mtime", TIMESTAMP),
        ("fingerprint", _S),
        ("run_id", _S),
        ("status", _S),  # "ingested" | "failed"
        ("members", _I64),  # = packed + duplicates + errors + skipped
        ("packed", _I64),
        ("duplicates", _I64),
        ("errors", _I64),
        ("skipped", _I64),
        ("superseded", _B),
        ("superseded_by_run", _S),
    ]
)

ERRORS_SCHEMA = pa.schema(
    [
        ("run_id", _S),
        ("source_path", _S),
        ("source_member", _S),
        ("stage", _S),  # "scan" | "pack" | "duplicate" | "conflict" | "unpaired"
        ("error", _S),
        ("at", TIMESTAMP),
    ]
)

RUNS_SCHEMA = pa.schema(
    [
        ("run_id", _S),
        ("dataset", _S),
        ("started_at", TIMESTAMP),
        ("committed_at", TIMESTAMP),
        ("num_packs", _I64),
        ("num_records", _I64),
        ("num_errors", _I64),  # scan + pack errors (duplicates and conflicts are counted apart)
        ("num_duplicates", _I64),
        ("num_conflicts", _I64),
        ("status", _S),  # "committed" | "failed"
    ]
)

SCHEMAS: dict[TableName, pa.Schema] = {
    "packs": PACKS_SCHEMA,
    "records": RECORDS_SCHEMA,
    "documents": DOCUMENTS_SCHEMA,
    "sources": SOURCES_SCHEMA,
    "errors": ERRORS_SCHEMA,
    "runs": RUNS_SCHEMA,
}


def empty_table(name: TableName) -> pa.Table:
    """An empty table with the schema of ``name``.

    >>> empty_table("errors").num_rows, empty_table("errors").num_columns
    (0, 6)
    """
    return SCHEMAS[name].empty_table()


def to_table(name: TableName, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (dicts) → a table of exactly the schema of ``name`` (missing keys become null).

    >>> to_table("errors", [{"run_id": "r", "stage": "scan"}]).column("stage").to_pylist()
    ['scan']
    """
    schema = SCHEMAS[name]
    return pa.Table.from_pylist(
        [{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema
    )


def conform(name: TableName, table: pa.Table) -> pa.Table:
    """Cast a table read back from any engine (string views, large strings…) to the contract schema.

    >>> conform("errors", empty_table("errors")).schema == ERRORS_SCHEMA
    True
    """
    schema = SCHEMAS[name]
    cols = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, schema=schema)
