"""The catalog on a Delta-enabled SparkSession (Databricks, or ``local_session(delta=True)``).

delta-rs (:class:`~iac_spark.catalog.store.DeltaRsStore`) is the default engine and
needs no jars. When the session has Delta, :class:`SparkDeltaStore` implements the same
:class:`~iac_spark.catalog.store.CatalogStore` protocol with Spark SQL, either on the
same path tables ``OUT/_catalog/<table>`` or on Unity Catalog tables
``<catalog_name>_<table>`` (e.g. ``catalog_name="main.imaging.iac"`` →
``main.imaging.iac_records``). Tables are created with the contract schema and
``delta.enableDeletionVectors = false`` so delta-rs, DuckDB and Polars keep reading them.
Concurrent-commit exceptions (``ConcurrentAppendException``…) are retried like
delta-rs's ``CommitFailedError``.

For analysts who query the tables with plain SQL (Databricks SQL, a notebook), not through
our readers, :func:`publish_views` creates persistent views ``<schema>.<prefix><name>`` in the
metastore / Unity Catalog that carry the committed rule of :mod:`.views`: a half-written build
never shows through them.

Example:
    >>> from iac_spark.catalog import build, has_delta
    >>> if has_delta(spark):                                                    # doctest: +SKIP
    ...     _ = build(spark, ["/data/zips"], "/data/out", engine="spark",
    ...               catalog_name="main.imaging.iac_raw")
    ...     views = publish_views(spark, "/data/out", catalog_name="main.imaging.iac_raw")
    >>> views["records"], spark.table(views["records"]).count()              # doctest: +SKIP
    ('main.imaging.iac_records', 240)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from ..errors import CatalogError, OptionError
from ..inputs.discover import normalize_path
from ..session import DELTA_EXTENSION
from .schema import SCHEMAS, TABLES, TableName, conform
from .store import (
    PLAIN_TABLE_PROPERTIES,
    AsOf,
    CatalogStore,
    DeltaRsStore,
    RetryPolicy,
    Rows,
    catalog_root,
    retrying,
    sql_str,
)
from .views import DERIVED_VIEWS, SPARK_FUNCTIONS, Dialect, derived_sql, view_sql

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "DELTA_EXTENSION",
    "SparkDeltaStore",
    "catalog_store",
    "has_delta",
    "optimize_tables",
    "publish_views",
    "spark_ddl",
]

_CONFLICTS = (
    "ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException", "ConcurrentWriteException", "MetadataChangedException",
    "ProtocolChangedException", "DeltaConcurrentModificationException", "DELTA_CONCURRENT",
)  # fmt: skip


def has_delta(spark: SparkSession) -> bool:
    """True when ``spark`` can read and write Delta tables.

    Cheap and side-effect free: on Databricks (``DATABRICKS_RUNTIME_VERSION`` set) Delta is
    built in; elsewhere the session must list :data:`DELTA_EXTENSION` in
    ``spark.sql.extensions`` *and* (classic sessions) the class must load in the driver JVM
    (Spark only warns when a configured extension is missing). Spark Connect sessions
    (no JVM in this process) trust the server configuration, read through ``spark.conf``.
    """
    from ..session import is_connect

    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return True
    try:
        extensions = spark.conf.get("spark.sql.extensions", "") or ""
    except Exception:
        return False
    if DELTA_EXTENSION not in extensions:
        return False
    jvm = None if is_connect(spark) else getattr(spark, "_jvm", None)
    if jvm is None:
        return True
    try:
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName(DELTA_EXTENSION, False, loader)
    except Exception:
        return False
    return True


def _is_conflict(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return any(name in text for name in _CONFLICTS) or "already exists" in text.lower()


_DDL_TYPES = {
    pa.string(): "STRING", pa.int64(): "BIGINT", pa.int32(): "INT", pa.bool_(): "BOOLEAN",
    pa.timestamp("us", tz="UTC"): "TIMESTAMP", pa.float64(): "DOUBLE", pa.date32(): "DATE",
    pa.list_(pa.float64()): "ARRAY<DOUBLE>", pa.list_(pa.string()): "ARRAY<STRING>",
}  # fmt: skip


def spark_ddl(name: TableName) -> str:
    """Spark SQL column list of a catalog table.

    >>> spark_ddl("errors")
    '`run_id` STRING, `source_path` STRING, `source_member` STRING, `stage` STRING, `error` STRING, `at` TIMESTAMP'
    """
    return ", ".join(f"`{f.name}` {_DDL_TYPES[f.type]}" for f in SCHEMAS[name])


def _quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _quote_name(name: str) -> str:
    return ".".join(f"`{part}`" for part in name.split("."))


class SparkDeltaStore:
    """The catalog tables through Spark Delta: path tables under OUT, or Unity Catalog names."""

    def __init__(
        self,
        spark: SparkSession,
        out: str,
        *,
        catalog_name: str | None = None,
        retry: RetryPolicy | None = None,
        view_prefix: str = "",
    ) -> None:
        self.spark = spark
        self.out = normalize_path(out)
        self.root = catalog_root(self.out)
        self.catalog_name = catalog_name
        self.retry = retry or RetryPolicy()
        self.view_prefix = view_prefix  # temp views of :meth:`session` are ``<prefix><name>``
        # tables this store has created or seen: Snapshot.load calls ensure() before every read,
        # and each CREATE TABLE IF NOT EXISTS costs a Delta log lookup (a quarter of a commit)
        self._ensured: set[TableName] = set()

    def __repr__(self) -> str:
        return f"SparkDeltaStore({self.out!r}, catalog_name={self.catalog_name!r})"

    def location(self, name: TableName) -> str:
        if self.catalog_name:
            return f"{self.catalog_name}_{name}"
        return os.path.join(self.root, name)

    def _ref(self, name: TableName) -> str:
        if self.catalog_name:
            return _quote_name(self.location(name))
        return f"delta.`{self.location(name)}`"

    def _reader(self, name: TableName, version: int | None = None) -> DataFrame:
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return (
            reader.table(self.location(name))
            if self.catalog_name
            else reader.load(self.location(name))
        )

    def exists(self) -> bool:
        if self.catalog_name:
            return bool(self.spark.catalog.tableExists(self.location("runs")))
        # plain SQL, not the Delta Python API (delta.tables needs Delta's Connect plugin over
        # Spark Connect): a path is a Delta table when its history can be read
        if not os.path.isdir(os.path.join(self.location("runs"), "_delta_log")):
            return False
        try:
            self._history("runs", limit=1)
        except Exception:
            return False
        return True

    def ensure(self) -> None:
        props = ", ".join(f"{sql_str(k)} = {sql_str(v)}" for k, v in PLAIN_TABLE_PROPERTIES.items())
        for name in TABLES:
            if name in self._ensured:
                continue
            stmt = (
                f"CREATE TABLE IF NOT EXISTS {self._ref(name)} ({spark_ddl(name)}) "
                f"USING DELTA TBLPROPERTIES ({props})"
            )

            def create(stmt: str = stmt) -> None:
                self.spark.sql(stmt)

            retrying(
                f"create {self.location(name)}", create, policy=self.retry, retry_if=_is_conflict
            )
            self._add_missing_columns(name)
            self._ensured.add(name)

    def _add_missing_columns(self, name: TableName) -> None:
        """Contract columns an older catalog's table lacks, added as nullable columns."""
        have = {f.name for f in self._reader(name).schema.fields}
        missing = [f for f in SCHEMAS[name] if f.name not in have]
        if missing:
            cols = ", ".join(f"`{f.name}` {_DDL_TYPES[f.type]}" for f in missing)
            stmt = f"ALTER TABLE {self._ref(name)} ADD COLUMNS ({cols})"
            retrying(
                f"add columns to {self.location(name)}",
                lambda: self.spark.sql(stmt),
                policy=self.retry,
                retry_if=_is_conflict,
            )

    def _history(self, name: TableName, limit: int | None = None) -> list[dict[str, Any]]:
        """Delta history; ``epoch`` = commit time in seconds since 1970 (no time-zone ambiguity)."""
        from pyspark.sql import functions as F

        rows = (
            self.spark.sql(
                f"DESCRIBE HISTORY {self._ref(name)}" + (f" LIMIT {limit}" if limit else "")
            )
            .select(
                "version",
                F.col("timestamp").cast("double").alias("epoch"),
                "operation",
                "userMetadata",
            )
            .collect()
        )
        return [r.asDict() for r in rows]

    def version(self, name: TableName, as_of: AsOf = None) -> int:
        if as_of is None:  # the latest commit only: no need to list the whole history
            return int(self._history(name, limit=1)[0]["version"])
        history = self._history(name)
        versions = [int(h["version"]) for h in history]
        if as_of is None:
            return max(versions)
        if isinstance(as_of, int):
            if as_of not in versions:
                raise CatalogError(
                    f"{self.location(name)}: no version {as_of} (versions {min(versions)}..{max(versions)})"
                )
            return as_of
        ts = datetime.fromisoformat(as_of) if isinstance(as_of, str) else as_of
        ts = ts if ts.tzinfo is not None else ts.replace(tzinfo=timezone.utc)
        older = [int(h["version"]) for h in history if float(h["epoch"]) <= ts.timestamp()]
        if not older:
            raise CatalogError(f"{self.location(name)}: no version at or before {ts.isoformat()}")
        return max(older)

    def read(
        self, name: TableName, *, columns: Sequence[str] | None = None, as_of: AsOf = None
    ) -> pa.Table:
        # a version number is read as is: checking it first costs a DESCRIBE HISTORY, about as
        # much as the read itself (Snapshot.load reads by version); only when Delta refuses it
        # is it resolved, for a CatalogError that names the versions there are
        version = as_of if as_of is None or isinstance(as_of, int) else self.version(name, as_of)
        try:
            df = self._reader(name, version)
            if columns is not None:
                df = df.select(*columns)
            table = df.toArrow()
        except Exception:
            if isinstance(as_of, int):
                self.version(name, as_of)  # raises CatalogError for a version the table lacks
            raise
        if columns is None:
            return conform(name, table)
        schema = SCHEMAS[name]
        return pa.table({c: table.column(c).cast(schema.field(c).type) for c in columns})

    def append(self, name: TableName, data: Rows, *, run_id: str) -> int:
        tag = f"iac_run_id={run_id}"
        # a streamed append is collected here: Spark builds the DataFrame from driver memory anyway
        table = data().read_all() if callable(data) else data
        df = self.spark.createDataFrame(conform(name, table))

        def write() -> None:
            writer = (
                df.write.format("delta").mode("append").option("userMetadata", tag)
                .option("mergeSchema", "true")  # older catalogs gain the new columns
            )  # fmt: skip
            if self.catalog_name:
                writer.saveAsTable(self.location(name))
            else:
                writer.save(self.location(name))

        retrying(
            f"append run {run_id} to {self.location(name)}",
            write,
            policy=self.retry,
            retry_if=_is_conflict,
        )
        if name != "runs":
            return -1  # only the runs version is a catalog version; finding others costs a history
        mine = [int(h["version"]) for h in self._history(name) if h.get("userMetadata") == tag]
        if not mine:
            raise CatalogError(
                f"{self.location(name)}: the commit of run {run_id} is not in the table history"
            )
        return max(mine)

    def _dml(self, what: str, stmt: str) -> int:
        """Run one UPDATE/DELETE statement, retrying Delta write conflicts; rows affected."""
        return _affected(
            retrying(what, lambda: self.spark.sql(stmt), policy=self.retry, retry_if=_is_conflict)
        )

    def update(self, name: TableName, *, predicate: str, updates: Mapping[str, str]) -> int:
        sets = ", ".join(f"`{k}` = {v}" for k, v in updates.items())
        stmt = f"UPDATE {self._ref(name)} SET {sets} WHERE {predicate}"
        return self._dml(f"update {self.location(name)}", stmt)

    def delete(self, name: TableName, *, predicate: str) -> int:
        stmt = f"DELETE FROM {self._ref(name)} WHERE {predicate}"
        return self._dml(f"delete from {self.location(name)}", stmt)

    def session(self, runs_version: int | None) -> SparkSqlSession:
        return SparkSqlSession(self, runs_version)


class SparkSqlSession:
    """Spark SQL over the raw Spark Delta tables; views are session temp views ``<prefix><name>``."""

    def __init__(self, store: SparkDeltaStore, runs_version: int | None) -> None:
        self.spark = store.spark
        self.prefix = store.view_prefix

        def ref(name: str) -> str:
            base = store._ref(name)  # type: ignore[arg-type]
            return (
                f"{base} VERSION AS OF {runs_version}"
                if name == "runs" and runs_version is not None
                else base
            )

        self.dialect = Dialect(ref=ref, quote=_quote_ident)
        for stmt in SPARK_FUNCTIONS:  # DataFusion built-ins the derived views use
            self.spark.sql(stmt)

    def execute(self, sql: str) -> pa.Table:
        return self.spark.sql(sql).toArrow()

    def create_view(self, name: str, select: str) -> None:
        self.spark.sql(f"CREATE OR REPLACE TEMP VIEW `{self.prefix}{name}` AS {select}")


def _affected(df: DataFrame) -> int:
    """``num_affected_rows`` of a Delta UPDATE/DELETE result (the statement ran already)."""
    # no blanket ``except``: a result we cannot read is an error, not "0 rows retired"
    rows = df.collect()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PREFIX = re.compile(r"[A-Za-z0-9_]*")
_TEMP_FUNCTION = re.compile(r"CREATE OR REPLACE TEMPORARY FUNCTION (\w+)\(", re.IGNORECASE)


def _view_schema(spark: SparkSession, catalog_name: str | None, schema: str | None) -> str:
    """Where :func:`publish_views` puts the views: ``schema``, else beside the UC tables, else
    the session's current database (``default`` in a local session)."""
    if schema is None:
        if catalog_name is not None and "." in catalog_name:
            schema = catalog_name.rsplit(".", 1)[0]
        else:
            schema = str(spark.catalog.currentDatabase())
    parts = schema.split(".")
    if not 1 <= len(parts) <= 2 or not all(_IDENT.fullmatch(p) for p in parts):
        raise OptionError(
            f"publish_views: schema must be 'schema' or 'catalog.schema' of plain identifiers "
            f"(letters, digits, _), got {schema!r}"
        )
    return schema


def _persistent_functions(namespace: str) -> tuple[list[str], Callable[[str], str]]:
    """:data:`~.views.SPARK_FUNCTIONS` as persistent functions ``<namespace><name>``.

    A persistent view may not reference a temporary function, so the derived views' helpers
    are created once more, persistently, from the same statements, and the view SQL calls them
    by their qualified names. Returns the statements and the rewrite of a view's SQL.
    """
    statements: list[str] = []
    names: list[str] = []
    for stmt in SPARK_FUNCTIONS:
        m = _TEMP_FUNCTION.match(stmt)
        if m is None:
            raise CatalogError(f"cannot make this Spark SQL function persistent: {stmt!r}")
        names.append(m.group(1))
        statements.append(f"CREATE OR REPLACE FUNCTION {namespace}{m.group(1)}(" + stmt[m.end() :])

    def rewrite(sql: str) -> str:
        for name in names:
            sql = re.sub(rf"(?<![\w.`]){name}\s*\(", f"{namespace}{name}(", sql)
        return sql

    return statements, rewrite


def publish_views(
    spark: SparkSession,
    out: str,
    *,
    catalog_name: str | None = None,
    prefix: str = "iac_",
    schema: str | None = None,
) -> dict[str, str]:
    """Create or replace persistent views ``<schema>.<prefix><name>`` that hold committed rows only.

    One view per catalog table (``packs``, ``records``, ``documents``, ``sources``, ``errors``,
    ``runs``) and per derived view (``series``, ``studies``), each ``CREATE OR REPLACE VIEW``
    over the same SELECT every reader of the catalog runs (:func:`~.views.view_sql`,
    :data:`~.views.DERIVED_VIEWS`). The raw tables are referenced as themselves, never through
    temp views: the path tables ``delta.`OUT/_catalog/<table>``` or, with ``catalog_name``, the
    metastore / Unity Catalog tables ``<catalog_name>_<table>``; ``runs`` is not pinned to a
    version, so every query of a view sees the runs committed at that moment and a build
    killed between its table commits stays invisible. The derived views' helper functions
    are created beside them as ``<schema>.<prefix><function>`` (a persistent view cannot call a
    temporary function).

    ``schema`` is ``schema`` (the session catalog: ``default.iac_records``) or
    ``catalog.schema`` (Unity Catalog: ``main.imaging.iac_records``); by default the schema of
    ``catalog_name``'s tables, else the session's current database. Views never replace a
    catalog table: pick a ``prefix`` other than the tables' (``catalog_name="main.imaging.iac_raw"``
    and the default ``prefix="iac_"``). Needs a Delta-enabled session and an existing catalog
    (:class:`CatalogError` otherwise). Idempotent; returns the qualified view names by name.
    """
    if not has_delta(spark):
        raise CatalogError(
            "publish_views needs a Delta-enabled SparkSession (Databricks, or "
            "iac_spark.local_session(delta=True) after `make delta-jars`)"
        )
    if not _PREFIX.fullmatch(prefix):
        raise OptionError(f"publish_views: prefix must be letters, digits or _, got {prefix!r}")
    namespace = f"{_view_schema(spark, catalog_name, schema)}.{prefix}"
    store = SparkDeltaStore(spark, out, catalog_name=catalog_name)
    if not store.exists():
        raise CatalogError(f"no catalog under {store.out}: run a build into it first")
    names = {name: f"{namespace}{name}" for name in (*SCHEMAS, *DERIVED_VIEWS)}
    tables = {store.location(t).lower() for t in TABLES} if catalog_name else set()
    clash = sorted(v for v in names.values() if v.lower() in tables)
    if clash:
        raise CatalogError(
            f"publish_views: views {clash} would replace the catalog tables of the same names; "
            f"give another prefix= (the tables are {catalog_name}_<table>)"
        )
    store.ensure()  # tables a newer version added (e.g. documents) exist, empty
    live = Dialect(ref=store._ref, quote=_quote_ident)  # type: ignore[arg-type]
    functions, call_persistent = _persistent_functions(namespace)
    for stmt in functions:
        spark.sql(stmt)
    selects: dict[str, str] = {name: view_sql(name, live) for name in SCHEMAS}
    for derived in DERIVED_VIEWS:
        selects[derived] = call_persistent(derived_sql(derived, namespace))
    for name, select in selects.items():
        comment = sql_str(f"iac_spark: committed {name} of the catalog of {store.out}")
        spark.sql(f"CREATE OR REPLACE VIEW {names[name]} COMMENT {comment} AS {select}")
    return names


def _compact(store: CatalogStore, name: TableName) -> dict[str, Any]:
    if isinstance(store, SparkDeltaStore):
        rows = store.spark.sql(f"OPTIMIZE {store._ref(name)}").collect()
        return rows[0].asDict(recursive=True) if rows else {}
    if isinstance(store, DeltaRsStore):
        return dict(store.delta_table(name).optimize.compact())
    raise CatalogError(f"optimize_tables: no compaction for {store!r}")


def optimize_tables(store: CatalogStore) -> dict[str, dict[str, Any]]:
    """Compact the small files of every catalog table (one Delta commit per table).

    Each build appends a few small files to each table; compaction rewrites them into fewer,
    larger ones without changing a row (readers and time travel are unaffected; the replaced
    files stay until a Delta ``VACUUM`` past the retention period). delta-rs:
    ``DeltaTable.optimize.compact()``; Spark Delta: ``OPTIMIZE`` of the path table or the
    Unity Catalog table. Write conflicts with a concurrent build are retried like commits.
    Returns the engine's metrics per table.
    """
    policy = getattr(store, "retry", None) or RetryPolicy()
    return {
        name: retrying(
            f"optimize {store.location(name)}",
            partial(_compact, store, name),
            policy=policy,
            retry_if=_is_conflict,
        )
        for name in TABLES
    }


def catalog_store(
    out: str,
    *,
    spark: SparkSession | None = None,
    engine: Literal["delta-rs", "spark"] = "delta-rs",
    catalog_name: str | None = None,
) -> CatalogStore:
    """The store for ``engine``: delta-rs on ``OUT/_catalog`` (default), or Spark Delta.

    ``catalog_name`` (Unity Catalog ``catalog.schema.prefix``) implies ``engine="spark"``.
    Raises :class:`CatalogError` when Spark Delta is asked for but the session lacks it.
    """
    if engine == "delta-rs" and catalog_name is None:
        return DeltaRsStore(out)
    if spark is None or not has_delta(spark):
        raise CatalogError(
            "engine='spark' / catalog_name= needs a Delta-enabled SparkSession (Databricks, or "
            "iac_spark.local_session(delta=True) after `make delta-jars`); the default "
            "engine='delta-rs' needs no jars"
        )
    return SparkDeltaStore(spark, out, catalog_name=catalog_name)
