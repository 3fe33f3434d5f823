"""The ``zipdcm`` Spark data source: DICOM metadata (and bytes) streamed out of zips.

A thin adapter: options are parsed by :class:`~iac_spark.sources.options.ZipDcmOptions`,
files found by :func:`~iac_spark.inputs.discover.discover`, partitions planned by
:func:`~iac_spark.inputs.plan.plan_partitions` on the driver, and each partition
scanned by :func:`~iac_spark.inputs.scan.scan_unit` into Arrow record batches.

Example:
    >>> import iac_spark
    >>> spark = iac_spark.local_session()                     # doctest: +SKIP
    >>> df = spark.read.format("zipdcm").load("/data/zips")   # doctest: +SKIP
    >>> df.groupBy("modality").count().show()                 # doctest: +SKIP
    +--------+-----+
    |modality|count|
    +--------+-----+
    |      CT|  160|
    |      MR|   80|
    +--------+-----+
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import (
    BinaryType,
    BooleanType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from ..dicom.dicom_json import JsonEncoderCache
from ..inputs.discover import discover
from ..inputs.plan import plan_partitions
from ..inputs.scan import COLUMNS, ScanUnit, scan_unit
from .options import ZipDcmOptions

__all__ = ["ZipDcmDataSource", "arrow_schema", "spark_schema"]

_INT_COLUMNS = {"instance_number", "rows", "columns", "number_of_frames"}
_BATCH_ROWS = 2048
_BATCH_CONTENT_BYTES = 64 * 1024**2


def _spark_type(name: str) -> Any:
    if name in ("size", "crc32"):
        return LongType()
    if name in _INT_COLUMNS:
        return IntegerType()
    if name == "has_pixel_data":
        return BooleanType()
    if name == "content":
        return BinaryType()
    return StringType()


def _arrow_type(name: str) -> pa.DataType:
    if name in ("size", "crc32"):
        return pa.int64()
    if name in _INT_COLUMNS:
        return pa.int32()
    if name == "has_pixel_data":
        return pa.bool_()
    if name == "content":
        return pa.binary()
    return pa.string()


def _columns(content: bool) -> tuple[str, ...]:
    return (*COLUMNS, "content") if content else COLUMNS


def spark_schema(content: bool = False) -> StructType:
    """The contract schema (``content`` last, only when requested)."""
    return StructType([StructField(c, _spark_type(c), True) for c in _columns(content)])


def arrow_schema(content: bool = False) -> pa.Schema:
    """The same schema as Arrow, used for the record batches ``read()`` yields."""
    return pa.schema([pa.field(c, _arrow_type(c)) for c in _columns(content)])


class ZipDcmPartition(InputPartition):
    """Units of one partition (small and picklable)."""

    def __init__(self, units: Sequence[ScanUnit]) -> None:
        super().__init__(tuple(units))
        self.units = tuple(units)


class ZipDcmReader(DataSourceReader):
    """Plans partitions on the driver and scans them into Arrow batches on executors."""

    def __init__(self, options: ZipDcmOptions) -> None:
        self.options = options

    def partitions(self) -> Sequence[InputPartition]:
        o = self.options
        files = discover(o.paths, glob_filter=o.path_glob_filter, recursive=o.recursive_file_lookup)
        parts = plan_partitions(
            files, max_partition_bytes=o.max_partition_bytes, num_partitions=o.num_partitions
        )
        return [ZipDcmPartition(p) for p in parts] or [ZipDcmPartition(())]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, ZipDcmPartition)
        o = self.options
        schema = arrow_schema(o.content)
        ncols = len(schema)
        cache = JsonEncoderCache()
        rows: list[tuple[Any, ...]] = []
        content_bytes = 0
        for unit in partition.units:
            for row in scan_unit(unit, content=o.content, mode=o.mode, cache=cache):
                rows.append(row)
                if o.content and row[-1] is not None:
                    content_bytes += len(row[-1])
                if len(rows) >= _BATCH_ROWS or content_bytes >= _BATCH_CONTENT_BYTES:
                    yield _batch(rows, schema, ncols)
                    rows, content_bytes = [], 0
        if rows:
            yield _batch(rows, schema, ncols)


def _batch(rows: list[tuple[Any, ...]], schema: pa.Schema, ncols: int) -> pa.RecordBatch:
    cols = list(zip(*rows, strict=True))
    return pa.RecordBatch.from_arrays(
        [pa.array(cols[i], type=schema.field(i).type) for i in range(ncols)], schema=schema
    )


class ZipDcmDataSource(DataSource):
    """``spark.read.format("zipdcm")``: see the module docstring and docs/zipdcm.md."""

    def __init__(self, options: dict[str, str]) -> None:
        super().__init__(options)
        self.parsed = ZipDcmOptions.parse(options)

    @classmethod
    def name(cls) -> str:
        return "zipdcm"

    def schema(self) -> StructType:
        return spark_schema(self.parsed.content)

    def reader(self, schema: StructType) -> DataSourceReader:
        return ZipDcmReader(self.parsed)
