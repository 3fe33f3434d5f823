"""The ``zipdcm`` Spark data source: DICOM metadata (and bytes) streamed out of zips.

A thin adapter: options are parsed by :class:`~iac_spark.sources.options.ZipDcmOptions`,
files found by :func:`~iac_spark.inputs.discover.discover` and surveyed once, partitions
planned by :func:`~iac_spark.inputs.plan.plan_partitions` on the driver, and each partition
scanned by :func:`~iac_spark.inputs.scan.scan_unit` with the
:class:`~iac_spark.dicom.rows.DicomParser` into Arrow record batches.

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

import functools
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

from ..dicom.rows import DicomParser
from ..inputs.discover import discover
from ..inputs.plan import ScanUnit, plan_partitions
from ..inputs.scan import MemberParser, rows_to_batch, scan_schema, scan_unit
from ..inputs.survey import survey
from .options import ZipDcmOptions

__all__ = ["ScanPartition", "ScanReader", "ZipDcmDataSource", "arrow_schema", "spark_schema"]

_BATCH_ROWS = 2048
_BATCH_CONTENT_BYTES = 64 * 1024**2


def arrow_schema(content: bool = False) -> pa.Schema:
    """The ``zipdcm`` contract schema as Arrow (``content`` last, only when requested)."""
    return scan_schema(DicomParser(), content=content)


def spark_schema(content: bool = False) -> StructType:
    """The contract schema as a Spark ``StructType``."""
    return from_arrow_schema(arrow_schema(content))


class ScanPartition(InputPartition):
    """Units of one partition (small and picklable)."""

    def __init__(self, units: Sequence[ScanUnit]) -> None:
        super().__init__(tuple(units))
        self.units = tuple(units)


class ScanReader(DataSourceReader):
    """Plans partitions on the driver and scans them into Arrow batches on executors.

    Shared by ``zipdcm`` and ``ziptext``: ``make_parser`` builds the payload parser inside
    ``read()`` (parsers hold caches and are not shipped).
    """

    def __init__(
        self, options: Any, make_parser: Any, glob_filter: str | None, *, filter_zips: bool = True
    ) -> None:
        self.options = options
        self.make_parser = make_parser
        self.glob_filter = glob_filter
        self.filter_zips = filter_zips

    def partitions(self) -> Sequence[InputPartition]:
        o = self.options
        files = discover(
            o.paths, glob_filter=self.glob_filter, recursive=o.recursive_file_lookup,
            filter_zips=self.filter_zips, follow_symlinks=o.limits.follow_symlinks,
        )  # fmt: skip
        parts = plan_partitions(
            survey(files, limits=o.limits),
            max_partition_bytes=o.max_partition_bytes,
            num_partitions=o.num_partitions,
        )
        return [ScanPartition(p) for p in parts] or [ScanPartition(())]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, ScanPartition)
        o = self.options
        content = bool(getattr(o, "content", False))
        parser: MemberParser = self.make_parser()
        schema = scan_schema(parser, content=content)
        rows: list[tuple[Any, ...]] = []
        content_bytes = 0
        for unit in partition.units:
            for row in scan_unit(
                unit, parser, content=content, mode=o.mode, include_skipped=o.include_skipped,
                limits=o.limits,
            ):  # fmt: skip
                rows.append(row)
                if content and row[-1] is not None:
                    content_bytes += len(row[-1])
                if len(rows) >= _BATCH_ROWS or content_bytes >= _BATCH_CONTENT_BYTES:
                    yield rows_to_batch(rows, schema)
                    rows, content_bytes = [], 0
        if rows:
            yield rows_to_batch(rows, schema)


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
        o = self.parsed
        return ScanReader(o, functools.partial(DicomParser, meta=o.meta), o.path_glob_filter)
