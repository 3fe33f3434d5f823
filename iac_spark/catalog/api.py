"""Read the catalog: Arrow tables, SQL (delta-rs / DataFusion) and Spark temp views.

Every reader sees committed runs only (see :mod:`iac_spark.catalog.snapshot`), with
effective ``retired`` / ``superseded`` flags, and optionally ``as_of`` a catalog
version (``int``: a ``runs`` table version, as returned in ``catalog_version`` by
:func:`iac_spark.catalog.build`) or a time (``datetime`` / ISO-8601 string).

:func:`sql` runs DataFusion SQL over the committed views (:mod:`.views`): ``packs``,
``records``, ``documents``, ``sources``, ``errors``, ``runs``, and the derived ``series`` and
``studies``, so a query never sees half a build.

Example:
    >>> import iac_spark.catalog as cat
    >>> c = cat.open("demo_out")                                            # doctest: +SKIP
    >>> c.records().num_rows                                                # doctest: +SKIP
    240
    >>> cat.sql("demo_out", "SELECT modality, count(*) AS n FROM records "
    ...         "WHERE NOT retired GROUP BY modality ORDER BY modality").to_pylist()  # doctest: +SKIP
    [{'modality': 'CT', 'n': 160}, {'modality': 'MR', 'n': 80}]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import CatalogError
from ..inputs.discover import normalize_path
from .rows import pack_abspath
from .schema import SCHEMAS, TABLES, TableName
from .snapshot import Snapshot
from .store import AsOf, CatalogStore, DeltaRsStore
from .views import VIEWS

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["Catalog", "open", "register_views", "sql"]


_UID_INDEX = pa.schema(
    [("sop_instance_uid", pa.string()), ("pack_id", pa.string()), ("row", pa.int64())]
)
_UID_INDEX_QUERY = (
    "SELECT sop_instance_uid, pack_id, row FROM records "
    "WHERE NOT retired AND sop_instance_uid IS NOT NULL ORDER BY pack_id, row"
)


class Catalog:
    """A consistent, read-only view of the catalog under ``OUT/_catalog`` at one version.

    The committed runs are read once, when the object is made: later commits by other
    builds do not change what this object returns (open a new one to see them).
    """

    def __init__(self, out: str, *, as_of: AsOf = None, store: CatalogStore | None = None) -> None:
        self.out = normalize_path(out)
        self.store = store or DeltaRsStore(self.out)
        self.snapshot = Snapshot.load(self.store, as_of)
        self._uid_index: pa.Table | None = None  # lookup(): UID, pack, row of live records

    def __repr__(self) -> str:
        return f"Catalog({self.out!r}, version={self.version}, runs={len(self.snapshot.committed)})"

    @property
    def version(self) -> int:
        """The ``runs`` table version this view reflects (the catalog version)."""
        return self.snapshot.version

    @property
    def committed_runs(self) -> frozenset[str]:
        """Run ids visible in this view."""
        return self.snapshot.committed

    def table(self, name: TableName) -> pa.Table:
        """Committed rows of ``name`` (one of packs, records, sources, errors, runs)."""
        if name not in SCHEMAS:
            raise CatalogError(f"unknown catalog table {name!r}; tables are {', '.join(TABLES)}")
        return self.snapshot.table(name)

    def packs(self) -> pa.Table:
        """``packs``: one row per published pack (``path`` relative to OUT, see :meth:`pack_path`)."""
        return self.table("packs")

    def records(self) -> pa.Table:
        """``records``: one row per packed instance, retired ones included (filter on ``retired``)."""
        return self.table("records")

    def sources(self) -> pa.Table:
        """``sources``: one row per ingested input file and run."""
        return self.table("sources")

    def errors(self) -> pa.Table:
        """``errors``: scan / pack errors, duplicates and conflicts."""
        return self.table("errors")

    def runs(self, *, include_failed: bool = False) -> pa.Table:
        """``runs``: committed runs (and failed ones with ``include_failed=True``)."""
        return self.snapshot.runs(include_failed=include_failed)

    def to_pandas(self, name: TableName) -> pd.DataFrame:
        """:meth:`table` as a pandas DataFrame."""
        return self.table(name).to_pandas()

    def pack_path(self, path: str) -> str:
        """Absolute path of a ``packs.path`` value (stored relative to OUT)."""
        return pack_abspath(self.out, path)

    def sql(self, query: str) -> pa.Table:
        """Run SQL over this view's tables (DataFusion, or Spark SQL for a Spark Delta store)."""
        return self.snapshot.sql(query)

    def lookup(self, sop_instance_uids: str | Iterable[str]) -> pa.Table:
        """The live records of these SOP Instance UIDs: ``sop_instance_uid, pack_id, row``.

        An unknown UID has no row; one with conflicting live copies has a row per copy. Rows
        come in the order of the catalog's ``(pack_id, row)``. The first call reads the UID,
        pack and row of every live record of this view once and keeps them (about 100 bytes
        a record, 10 MB per 100,000); every later call is a vectorised match in memory (about
        1 ms per 100,000 live records) where one SQL query costs 10-20 ms. The view is fixed
        at one version, so what it keeps never goes stale.

        Example (``demo_out`` from ``make demo``):

            >>> c = open("demo_out")                                         # doctest: +SKIP
            >>> c.lookup(["1.2.826.0.1.3680043.8.498.7", "9.9"]).to_pylist()  # doctest: +SKIP
            [{'sop_instance_uid': '1.2.826.0.1.3680043.8.498.7', 'pack_id': 'r20261201-0000', 'row': 17}]
        """
        wanted = (
            [sop_instance_uids] if isinstance(sop_instance_uids, str) else list(sop_instance_uids)
        )
        index = self._uid_index
        if index is None:
            index = self.sql(_UID_INDEX_QUERY)
            index = pa.table({f.name: index.column(f.name).cast(f.type) for f in _UID_INDEX})
            self._uid_index = index
        mask = pc.is_in(index.column("sop_instance_uid"), value_set=pa.array(wanted, pa.string()))
        return index.filter(mask)


def open(out: str, *, as_of: AsOf = None, store: CatalogStore | None = None) -> Catalog:
    """Open the catalog of ``out`` at the latest or ``as_of`` version.

    Reads with delta-rs (no Spark) unless another ``store`` is given (e.g. a
    :class:`~iac_spark.catalog.spark_delta.SparkDeltaStore` for Unity Catalog tables).
    Raises :class:`CatalogError` when ``out`` has no catalog yet.
    """
    return Catalog(out, as_of=as_of, store=store)


def sql(out: str, query: str, *, as_of: AsOf = None) -> pa.Table:
    """Run ``query`` (DataFusion SQL) over ``packs``, ``records``, ``sources``, ``errors``, ``runs``.

    The views hold committed rows only, at the latest version or ``as_of``. Column types
    come back as DataFusion produces them (strings may be ``string_view``). Raises
    :class:`CatalogError` with DataFusion's message if the query fails.
    """
    return Snapshot.load(DeltaRsStore(out), as_of).sql(query)


def register_views(
    spark: SparkSession,
    out: str,
    *,
    as_of: AsOf = None,
    engine: Literal["auto", "delta-rs", "spark"] = "auto",
    catalog_name: str | None = None,
    prefix: str = "",
) -> dict[str, DataFrame]:
    """Register Spark temp views ``<prefix>packs`` … ``<prefix>runs``, ``series``, ``studies``.

    ``engine="spark"`` reads the tables with Spark Delta (lazy, scales; needs
    :func:`~iac_spark.catalog.has_delta`; implied by a Unity Catalog ``catalog_name``): the
    views are the committed-view SQL itself. ``"delta-rs"`` reads them with delta-rs and hands
    Arrow tables to ``spark.createDataFrame`` (no jars needed; the tables must fit the driver).
    ``"auto"`` picks ``spark`` when the session has Delta. Returns the DataFrames by name.

    Example:
        >>> register_views(spark, "demo_out")                                   # doctest: +SKIP
        >>> spark.sql("SELECT modality, count(*) FROM records GROUP BY modality").show()  # doctest: +SKIP
    """
    from .spark_delta import SparkDeltaStore, has_delta

    use_spark = (
        engine == "spark" or (engine == "auto" and has_delta(spark)) or catalog_name is not None
    )
    if use_spark:
        if not has_delta(spark):
            raise CatalogError(
                "register_views(engine='spark' or catalog_name=...) needs a Delta-enabled "
                "SparkSession; use engine='delta-rs' instead"
            )
        store = SparkDeltaStore(spark, out, catalog_name=catalog_name, view_prefix=prefix)
        Snapshot.load(store, as_of).session  # noqa: B018 - creates the temp views
        return {name: spark.table(f"{prefix}{name}") for name in VIEWS}
    snap = Snapshot.load(DeltaRsStore(out), as_of)
    frames: dict[str, Any] = {}
    for name in VIEWS:
        frames[name] = spark.createDataFrame(snap.sql(f"SELECT * FROM {name}"))
        frames[name].createOrReplaceTempView(f"{prefix}{name}")
    return frames
