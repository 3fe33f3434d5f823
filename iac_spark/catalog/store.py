"""Read and write the catalog's Delta tables (delta-rs), with bounded retries on conflicts.

``DeltaRsStore(out)`` owns ``OUT/_catalog/<table>`` for the five tables of
:mod:`iac_spark.catalog.schema`. It is the embedded default (no JVM, no jars);
:class:`iac_spark.catalog.spark_delta.SparkDeltaStore` implements the same
:class:`CatalogStore` protocol on a Delta-enabled SparkSession.

Writes only ever *append* rows, *update* the retirement flags, or *delete* rows of a
run that never committed; committed rows are never removed. Every write is one Delta
commit. Concurrent writers are arbitrated by Delta's optimistic concurrency: a write
that loses (``deltalake.exceptions.CommitFailedError``) is retried with exponential
backoff and jitter, a bounded number of times, then fails as :class:`CatalogError`.
Table creation races (two builds creating ``records`` at once) are retried the same way.

Example:
    >>> import tempfile
    >>> from iac_spark.catalog.schema import to_table
    >>> store = DeltaRsStore(tempfile.mkdtemp())
    >>> store.ensure()
    >>> store.append("errors", to_table("errors", [{"run_id": "r1", "stage": "scan"}]), run_id="r1")
    1
    >>> store.read("errors").column("run_id").to_pylist(), store.version("errors")
    (['r1'], 1)
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeAlias, TypeVar

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, QueryBuilder, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from ..errors import CatalogError
from ..inputs.discover import normalize_path
from .schema import SCHEMAS, TABLES, TableName, conform
from .views import Dialect

__all__ = [
    "CATALOG_DIR",
    "RAW_PREFIX",
    "AsOf",
    "CatalogStore",
    "DataFusionSession",
    "DeltaRsStore",
    "RetryPolicy",
    "Rows",
    "SqlSession",
    "catalog_root",
    "retrying",
    "sql_list",
    "sql_str",
]

#: Sub-folder of OUT holding the Delta tables.
CATALOG_DIR = "_catalog"

#: A catalog version: ``int`` = a Delta version of the ``runs`` table; ``datetime`` or an
#: ISO-8601 string = the latest ``runs`` version committed at or before that time.
AsOf: TypeAlias = int | datetime | str | None

#: Table properties that keep the tables readable by every engine (set where the engine
#: would otherwise turn the feature on by default, e.g. Databricks).
PLAIN_TABLE_PROPERTIES: dict[str, str] = {"delta.enableDeletionVectors": "false"}

T = TypeVar("T")

#: Parquet row groups of at most this many rows: the writer buffers one row group, so this
#: bounds a streamed append's memory (``records.meta`` can be tens of KB a row), and readers
#: can skip row groups by their statistics.
ROW_GROUP_ROWS = 16384
_WRITER = WriterProperties(max_row_group_size=ROW_GROUP_ROWS)

#: Rows to append: a table, or a callable returning a reader (called again on a retry).
Rows: TypeAlias = pa.Table | Callable[[], pa.RecordBatchReader]


def catalog_root(out: str) -> str:
    """``OUT/_catalog`` (absolute).

    >>> catalog_root("/data/out")
    '/data/out/_catalog'
    """
    return os.path.join(os.path.abspath(out), CATALOG_DIR)


def sql_str(value: str) -> str:
    """A SQL string literal (single quotes doubled); works in DataFusion and Spark SQL.

    >>> sql_str("it's")
    "'it''s'"
    """
    return "'" + value.replace("'", "''") + "'"


def sql_list(values: Sequence[str] | frozenset[str] | set[str]) -> str:
    """``('a', 'b')`` for ``IN``; callers must not pass an empty collection.

    >>> sql_list(["b", "a"])
    "('a', 'b')"
    """
    if not values:
        raise ValueError("sql_list needs at least one value")
    return "(" + ", ".join(sql_str(v) for v in sorted(values)) + ")"


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter for commits that lost a race.

    >>> [round(d, 2) for d in RetryPolicy(attempts=4, base_seconds=0.1, jitter=False).delays()]
    [0.1, 0.2, 0.4]
    """

    attempts: int = 16
    base_seconds: float = 0.05
    max_seconds: float = 2.0
    jitter: bool = True

    def delays(self) -> Iterator[float]:
        """The sleeps between attempts (``attempts - 1`` of them)."""
        for n in range(max(0, self.attempts - 1)):
            d = min(self.max_seconds, self.base_seconds * (2**n))
            yield random.uniform(d / 2, d) if self.jitter else d


def retrying(
    what: str,
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    retry_on: tuple[type[BaseException], ...] = (CommitFailedError,),
    retry_if: Callable[[BaseException], bool] | None = None,
) -> T:
    """Call ``fn`` until it does not raise ``retry_on`` (or an error ``retry_if`` accepts).

    After ``policy.attempts`` failures raises :class:`CatalogError` naming ``what``.

    >>> retrying("noop", lambda: 3, policy=RetryPolicy())
    3
    """
    delays = policy.delays()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            if not (isinstance(exc, retry_on) or (retry_if is not None and retry_if(exc))):
                raise
            delay = next(delays, None)
            if delay is None:
                raise CatalogError(
                    f"{what}: still conflicting with concurrent writers after {attempt} attempts: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            time.sleep(delay)


#: DataFusion name prefix of the unfiltered Delta tables behind the views.
RAW_PREFIX = "_iac_raw_"


class SqlSession(Protocol):
    """SQL over the raw catalog tables, with ``runs`` pinned at one version."""

    dialect: Dialect
    prefix: str  # views are created as ``<prefix><name>``

    def execute(self, sql: str) -> pa.Table:
        """Run one statement; the result as an Arrow table."""
        ...

    def create_view(self, name: str, select: str) -> None:
        """Make ``select`` queryable as ``name`` in this session."""
        ...


class DataFusionSession:
    """A DataFusion (``deltalake.QueryBuilder``) session over the raw delta-rs tables."""

    prefix = ""

    def __init__(self, store: DeltaRsStore, runs_version: int | None) -> None:
        self.qb = QueryBuilder()
        for name in TABLES:
            version = runs_version if name == "runs" else None
            self.qb.register(f"{RAW_PREFIX}{name}", store.delta_table(name, version))
        self.dialect = Dialect(
            ref=lambda name: f"{RAW_PREFIX}{name}",
            quote=lambda c: '"' + c.replace('"', '""') + '"',
        )

    def execute(self, sql: str) -> pa.Table:
        return pa.table(self.qb.execute(sql).read_all())

    def create_view(self, name: str, select: str) -> None:
        self.qb.execute(f"CREATE VIEW {name} AS {select}").read_all()


class CatalogStore(Protocol):
    """What the catalog needs from a Delta engine (delta-rs or Spark Delta)."""

    out: str

    def location(self, name: TableName) -> str:
        """Where table ``name`` lives (a path or a Unity Catalog name), for messages."""
        ...

    def exists(self) -> bool:
        """True once the catalog was created (its ``runs`` table exists)."""
        ...

    def ensure(self) -> None:
        """Create the missing tables (empty, contract schema) and add the contract columns an
        older catalog lacks (as nulls); safe to race."""
        ...

    def version(self, name: TableName, as_of: AsOf = None) -> int:
        """The Delta version of ``name`` (latest, or resolved from ``as_of``)."""
        ...

    def read(
        self, name: TableName, *, columns: Sequence[str] | None = None, as_of: AsOf = None
    ) -> pa.Table:
        """All rows of ``name`` (raw: uncommitted runs included), contract types."""
        ...

    def append(self, name: TableName, data: Rows, *, run_id: str) -> int:
        """Append ``data`` in one commit tagged with ``run_id``; returns the committed version.

        ``data`` is a table, or a zero-argument callable returning a ``RecordBatchReader`` of
        the table's schema (called again if the commit is retried), so large appends stream.
        An engine may return -1 for tables other than ``runs`` (only its versions are catalog
        versions) when finding the version costs extra work.
        """
        ...

    def update(self, name: TableName, *, predicate: str, updates: Mapping[str, str]) -> int:
        """``UPDATE name SET updates WHERE predicate`` (SQL expressions); returns rows updated."""
        ...

    def delete(self, name: TableName, *, predicate: str) -> int:
        """``DELETE FROM name WHERE predicate``; returns rows deleted."""
        ...

    def session(self, runs_version: int | None) -> SqlSession:
        """A SQL session over the raw tables with ``runs`` at ``runs_version``."""
        ...


class DeltaRsStore:
    """The catalog tables under ``OUT/_catalog`` through delta-rs (the default engine)."""

    def __init__(
        self,
        out: str,
        *,
        storage_options: dict[str, str] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.out = normalize_path(out)
        self.root = catalog_root(self.out)
        self.storage_options = storage_options
        self.retry = retry or RetryPolicy()

    def __repr__(self) -> str:
        return f"DeltaRsStore({self.out!r})"

    def location(self, name: TableName) -> str:
        return os.path.join(self.root, name)

    def exists(self) -> bool:
        return DeltaTable.is_deltatable(self.location("runs"), storage_options=self.storage_options)

    def delta_table(self, name: TableName, as_of: AsOf = None) -> DeltaTable:
        """The delta-rs table ``name`` (latest, or at ``as_of``); :class:`CatalogError` if missing."""
        path = self.location(name)
        try:
            dt = DeltaTable(path, storage_options=self.storage_options)
        except TableNotFoundError as exc:
            raise CatalogError(
                f"no catalog table at {path}: run a build into {self.out} first"
            ) from exc
        if as_of is not None:
            try:
                dt.load_as_version(as_of)
            except (DeltaError, ValueError, TypeError, OSError) as exc:
                raise CatalogError(
                    f"{path}: cannot load as_of={as_of!r} (latest version is "
                    f"{DeltaTable(path, storage_options=self.storage_options).version()}): {exc}"
                ) from exc
        return dt

    def ensure(self) -> None:
        for name in TABLES:
            path = self.location(name)

            def create(path: str = path, name: TableName = name) -> None:
                if DeltaTable.is_deltatable(path, storage_options=self.storage_options):
                    return
                # max_commit_retries=0: a creator that lost the race must fail (and then see the
                # table), not re-commit a second CREATE TABLE on top of the winner's.
                DeltaTable.create(
                    path, SCHEMAS[name], mode="ignore", name=name,
                    description=f"iac_spark catalog table {name}",
                    storage_options=self.storage_options,
                    commit_properties=CommitProperties(max_commit_retries=0),
                )  # fmt: skip

            retrying(f"create {path}", create, policy=self.retry, retry_on=(DeltaError,))
            self._add_missing_columns(name)

    def _add_missing_columns(self, name: TableName) -> None:
        """Columns added to the contract since this table was created (a catalog made by an older
        version): added as nullable columns, so every reader sees the contract schema."""
        from deltalake.schema import Schema as DeltaSchema

        dt = self.delta_table(name)
        have = {f.name for f in dt.schema().fields}
        missing = [f for f in SCHEMAS[name] if f.name not in have]
        if not missing:
            return
        fields = DeltaSchema.from_arrow(pa.schema(missing)).fields
        props = CommitProperties(custom_metadata={"iac_table": name, "iac_upgrade": "add_columns"})

        def add() -> None:
            fresh = self.delta_table(name)
            now = {f.name for f in fresh.schema().fields}
            todo = [f for f in fields if f.name not in now]
            if todo:
                fresh.alter.add_columns(list(todo), commit_properties=props)

        retrying(f"add columns to {self.location(name)}", add, policy=self.retry,
                 retry_on=(DeltaError,))  # fmt: skip

    def version(self, name: TableName, as_of: AsOf = None) -> int:
        return int(self.delta_table(name, as_of).version())

    def read(
        self, name: TableName, *, columns: Sequence[str] | None = None, as_of: AsOf = None
    ) -> pa.Table:
        table = self.delta_table(name, as_of).to_pyarrow_table(
            columns=list(columns) if columns is not None else None
        )
        if columns is None:
            return conform(name, table)
        schema = SCHEMAS[name]
        return pa.table({c: table.column(c).cast(schema.field(c).type) for c in columns})

    def append(self, name: TableName, data: Rows, *, run_id: str) -> int:
        path = self.location(name)
        table = None if callable(data) else conform(name, data)
        props = CommitProperties(custom_metadata={"iac_run_id": run_id, "iac_table": name})

        def write() -> int:
            # Writing through a DeltaTable object leaves it at exactly the version this commit
            # created (history() may mislabel versions while other writers commit).
            dt = self.delta_table(name)
            payload = table if table is not None else data()
            # schema_mode="merge": a catalog made by an older version gains the new columns
            write_deltalake(
                dt, payload, mode="append", schema_mode="merge", commit_properties=props,
                writer_properties=_WRITER,
            )  # fmt: skip
            return int(dt.version())

        return retrying(
            f"append {'streamed' if table is None else table.num_rows} rows of run {run_id} to {path}",
            write,
            policy=self.retry,
        )

    def update(self, name: TableName, *, predicate: str, updates: Mapping[str, str]) -> int:
        path = self.location(name)

        def run() -> int:
            metrics = self.delta_table(name).update(updates=dict(updates), predicate=predicate)
            return int(metrics.get("num_updated_rows", 0))

        return retrying(f"update {path} where {predicate[:200]}", run, policy=self.retry)

    def delete(self, name: TableName, *, predicate: str) -> int:
        path = self.location(name)

        def run() -> int:
            metrics = self.delta_table(name).delete(predicate)
            return int(metrics.get("num_deleted_rows", 0))

        return retrying(f"delete from {path} where {predicate[:200]}", run, policy=self.retry)

    def session(self, runs_version: int | None) -> DataFusionSession:
        return DataFusionSession(self, runs_version)
