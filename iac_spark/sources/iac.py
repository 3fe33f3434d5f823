"""The ``iac`` Spark data source: read published packs back as rows.

``spark.read.format("iac").load(path)`` — a pack file, a directory (recursive) or a
glob — yields one row per record: the pack's index columns, then ``pack_path`` and
``row`` (the record's position), and with ``.option("content", "true")`` the
decoded record bytes (for DICOM packs, the original file, byte-exact).

Every pack is opened through :class:`~iac_spark.packing.merge.VerifiedPack`: a damaged
header or table, or a record whose stored bytes do not have the CRC-32 of its index row,
fails the read with :class:`~iac_spark.errors.CorruptPackError` naming the pack and
the section or row; a wrong payload is never returned.

Example:
    >>> df = spark.read.format("iac").load("demo_out/packs/demo")            # doctest: +SKIP
    >>> df.groupBy("modality").count().show()                                # doctest: +SKIP
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

from ..errors import CorruptPackError, InputNotFoundError, OptionError
from ..inputs.discover import normalize_path
from ..packing.reading import VerifiedPack, open_pack
from .options import parse_bool

__all__ = ["IacDataSource", "IacOptions", "find_packs", "iac_arrow_schema"]

_ROWS_PER_PARTITION = 20_000
_BATCH_ROWS = 256


def find_packs(paths: Sequence[str]) -> list[str]:
    """``.iac`` files under ``paths`` (files, directories, globs), sorted, without duplicates."""
    out: dict[str, None] = {}
    for raw in paths:
        path = normalize_path(raw)
        matches = (
            sorted(glob.glob(path, recursive=True)) if any(c in path for c in "*?[") else [path]
        )
        found = False
        for m in matches:
            if os.path.isdir(m):
                for f in sorted(glob.glob(os.path.join(m, "**", "*.iac"), recursive=True)):
                    out[f] = None
                    found = True
            elif os.path.isfile(m):
                out[m] = None
                found = True
        if not found:
            raise InputNotFoundError(f"no .iac pack found at {raw}")
    return list(out)


def iac_arrow_schema(index_schema: pa.Schema, content: bool) -> pa.Schema:
    """Index columns + ``pack_path`` + ``row`` (+ ``content``); unsigned types widened for Spark."""
    fields = []
    for f in index_schema:
        t = f.type
        if pa.types.is_unsigned_integer(t):
            t = pa.int64()
        fields.append(pa.field(f.name, t))
    fields += [pa.field("pack_path", pa.string()), pa.field("row", pa.int64())]
    if content:
        fields.append(pa.field("content", pa.binary()))
    return pa.schema(fields)


@dataclass(frozen=True)
class IacOptions:
    """Options of ``spark.read.format("iac")``: ``path``/``paths`` and ``content``."""

    paths: tuple[str, ...]
    content: bool = False

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> IacOptions:
        opts = {str(k).lower(): str(v) for k, v in options.items()}
        unknown = sorted(set(opts) - {"path", "paths", "content"})
        if unknown:
            raise OptionError(f"unknown iac option(s) {unknown}; known: content")
        from .options import _paths

        return cls(_paths(opts), parse_bool("content", opts.get("content", "false")))


class IacPartition(InputPartition):
    def __init__(self, pack: str, start: int, stop: int) -> None:
        super().__init__((pack, start, stop))
        self.pack, self.start, self.stop = pack, start, stop


class IacReader(DataSourceReader):
    def __init__(self, options: IacOptions, schema: pa.Schema) -> None:
        self.options = options
        self.schema = schema

    def partitions(self) -> Sequence[InputPartition]:
        parts: list[InputPartition] = []
        for pack in find_packs(self.options.paths):
            reader, header = open_pack(pack)  # the header only: planning stays cheap
            reader.close()
            try:
                n = int(header["num_records"])
            except (KeyError, TypeError, ValueError) as exc:
                raise CorruptPackError(
                    f"{pack}: header has no valid num_records", pack=pack, section="header"
                ) from exc
            for start in range(0, max(n, 1), _ROWS_PER_PARTITION):
                parts.append(IacPartition(pack, start, min(n, start + _ROWS_PER_PARTITION)))
        return parts

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, IacPartition)
        index_names = [n for n in self.schema.names if n not in ("pack_path", "row", "content")]
        pk = VerifiedPack(partition.pack)
        try:
            index = pk.index_table
            if index.num_rows < partition.stop:
                raise CorruptPackError(
                    f"{partition.pack}: index table has {index.num_rows} rows, the header "
                    f"{partition.stop} or more", pack=partition.pack, section="index table",
                )  # fmt: skip
            for start in range(partition.start, partition.stop, _BATCH_ROWS):
                rows = list(range(start, min(start + _BATCH_ROWS, partition.stop)))
                chunk = index.slice(start, len(rows))
                arrays = [
                    chunk.column(n).cast(self.schema.field(n).type).combine_chunks()
                    for n in index_names
                ]
                arrays.append(pa.array([partition.pack] * len(rows), type=pa.string()))
                arrays.append(pa.array(rows, type=pa.int64()))
                if self.options.content:
                    arrays.append(pa.array(pk.read_many(rows), type=pa.binary()))
                yield pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        finally:
            pk.close()


class IacDataSource(DataSource):
    """``spark.read.format("iac")``: see the module docstring."""

    def __init__(self, options: dict[str, str]) -> None:
        super().__init__(options)
        self.parsed = IacOptions.parse(options)
        packs = find_packs(self.parsed.paths)
        with VerifiedPack(packs[0]) as pk:
            index_schema = pk.index_table.schema
        self.arrow_schema = iac_arrow_schema(index_schema, self.parsed.content)

    @classmethod
    def name(cls) -> str:
        return "iac"

    def schema(self) -> StructType:
        return from_arrow_schema(self.arrow_schema)

    def reader(self, schema: StructType) -> DataSourceReader:
        return IacReader(self.parsed, self.arrow_schema)
