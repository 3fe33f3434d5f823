"""The Delta catalog of published packs: tables, incremental builds, SQL, verify and vacuum.

Tables under ``OUT/_catalog/<table>`` (delta-rs by default; Spark Delta or Unity Catalog
when the session has Delta): ``packs``, ``records``, ``documents``, ``sources``, ``errors`` and
``runs``, the commit point. Readers only ever see committed runs (the view rule lives once, in
:mod:`.views`), plus the derived views ``series`` and ``studies``.

Example:
    >>> import iac_spark, iac_spark.catalog as cat
    >>> spark = iac_spark.local_session()                                    # doctest: +SKIP
    >>> cat.build(spark, ["demo_data"], "demo_out", dataset="demo").new_packs  # doctest: +SKIP
    1
    >>> cat.build(spark, ["demo_data"], "demo_out", dataset="demo").new_packs  # doctest: +SKIP
    0
    >>> cat.sql("demo_out", "SELECT count(*) AS n FROM records WHERE NOT retired").to_pylist()  # doctest: +SKIP
    [{'n': 240}]
    >>> cat.verify("demo_out").ok                                            # doctest: +SKIP
    True

Module map (one job each): :mod:`.schema` (Arrow schemas), :mod:`.views` (the committed
view SQL), :mod:`.store` (delta-rs I/O with retries), :mod:`.snapshot` (reads through the views),
:mod:`.rows` (BuildResult → rows), :mod:`.commit`, :mod:`.incremental`, :mod:`.ingest`
(``build``), :mod:`.api` (``open``, ``sql``, ``register_views``), :mod:`.checks`
(``verify``), :mod:`.cleanup` (``vacuum``), :mod:`.spark_delta` (the Spark Delta store and
``publish_views``: persistent metastore / Unity Catalog views with the committed rule).
"""

from __future__ import annotations

from .api import Catalog, open, register_views, sql
from .checks import VerifyReport, verify
from .cleanup import VacuumReport, vacuum
from .commit import CommitResult, commit_build, record_failed_run
from .incremental import SourcePlan, known_items, plan_sources
from .ingest import CatalogBuildResult, build
from .schema import SCHEMAS, TABLES
from .snapshot import Snapshot
from .spark_delta import SparkDeltaStore, catalog_store, has_delta, publish_views
from .store import AsOf, CatalogStore, DeltaRsStore, RetryPolicy

__all__ = [
    "SCHEMAS",
    "TABLES",
    "AsOf",
    "Catalog",
    "CatalogBuildResult",
    "CatalogStore",
    "CommitResult",
    "DeltaRsStore",
    "RetryPolicy",
    "Snapshot",
    "SourcePlan",
    "SparkDeltaStore",
    "VacuumReport",
    "VerifyReport",
    "build",
    "catalog_store",
    "commit_build",
    "has_delta",
    "known_items",
    "open",
    "plan_sources",
    "publish_views",
    "record_failed_run",
    "register_views",
    "sql",
    "vacuum",
    "verify",
]
