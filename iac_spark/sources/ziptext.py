"""The ``ziptext`` Spark data source: clinical notes streamed out of zips, decoded, with fields.

Same discovery, partition planning, modes and member-name decoding as ``zipdcm`` (the shared
:class:`~iac_spark.sources.zipdcm.ScanReader`); what a member *is* comes from
:class:`~iac_spark.text.rows.TextParser`. Options are parsed once by
:class:`~iac_spark.sources.options.ZipTextOptions`.

Example:
    >>> df = spark.read.format("ziptext").load("/data/notes")                 # doctest: +SKIP
    >>> df.groupBy("encoding", "status").count().show()                       # doctest: +SKIP
    +--------+------+-----+
    |encoding|status|count|
    +--------+------+-----+
    | gb18030|    ok| 4120|
    |   utf-8|    ok| 2281|
    |    NULL| error|    3|
    +--------+------+-----+
"""

from __future__ import annotations

import functools

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceReader
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

from ..inputs.scan import scan_schema
from ..text.rows import TextParser
from .options import ZipTextOptions
from .zipdcm import ScanReader

__all__ = ["ZipTextDataSource", "text_arrow_schema"]


def text_arrow_schema() -> pa.Schema:
    """The ``ziptext`` contract schema as Arrow."""
    return scan_schema(TextParser())


class ZipTextDataSource(DataSource):
    """``spark.read.format("ziptext")``: see the module docstring and docs/ziptext.md."""

    def __init__(self, options: dict[str, str]) -> None:
        super().__init__(options)
        self.parsed = ZipTextOptions.parse(options)

    @classmethod
    def name(cls) -> str:
        return "ziptext"

    def schema(self) -> StructType:
        return from_arrow_schema(text_arrow_schema())

    def reader(self, schema: StructType) -> DataSourceReader:
        o = self.parsed
        parser = functools.partial(
            TextParser, path_pattern=o.path_pattern, encoding=o.encoding,
            glob_filter=o.path_glob_filter, max_doc_bytes=o.max_doc_bytes, normalize=o.normalize,
        )  # fmt: skip
        return ScanReader(o, parser, o.path_glob_filter, filter_zips=False)
