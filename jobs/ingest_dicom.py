"""Databricks job entry point: incremental ingest of zipped DICOM into packs and the catalog.

Only new or changed archives are scanned and packed (a rerun over the same archives commits
nothing); a changed archive is re-ingested whole and its older records retired. After the
build, ``--views-schema`` (re)publishes the analysts' persistent views, which show committed
runs only. Error rows (bad members) do not fail the run: they are in the catalog's ``errors``.

Exit codes (as ``iac-spark``): 0 success, 2 fatal (bad arguments, failed build or commit).

On Databricks (``jobs/ingest_dicom.yml``) the job's own session is used; elsewhere a local
one, or none at all with ``--executor local`` and the default ``--engine delta-rs``::

    python jobs/ingest_dicom.py --sources demo_data/dicom --out demo_out --executor local
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import iac_spark
from iac_spark import catalog
from iac_spark.errors import IacSparkError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def parser() -> argparse.ArgumentParser:
    """The job's arguments (``tests/test_bundle.py`` checks the bundle's parameters against it)."""
    p = argparse.ArgumentParser(
        prog="ingest_dicom", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    p.add_argument("--sources", nargs="+", required=True, help="folders, globs, zips or .dcm files")
    p.add_argument("--out", required=True, help="output root: OUT/packs/ and OUT/_catalog/")
    p.add_argument("--dataset", default="default", help="dataset name: OUT/packs/<dataset>/")
    p.add_argument("--layout", choices=("dicom_p10", "dicom_patient"), default=None)
    p.add_argument(
        "--executor", choices=("spark", "local"), default="spark",
        help="pack tasks on Spark executors (default) or in this process",
    )  # fmt: skip
    p.add_argument(
        "--engine", choices=("delta-rs", "spark"), default="delta-rs",
        help="catalog writer: delta-rs (embedded) or Spark Delta",
    )  # fmt: skip
    p.add_argument(
        "--catalog-name", type=lambda s: s or None, default=None,
        help="catalog tables as metastore / Unity Catalog tables <name>_<table> "
        "(e.g. main.imaging.iac_raw; implies --engine spark); empty: path tables under OUT",
    )  # fmt: skip
    p.add_argument(
        "--views-schema", type=lambda s: s or None, default=None,
        help="publish the persistent views into this schema (catalog.schema); empty: none",
    )  # fmt: skip
    p.add_argument("--view-prefix", default="iac_", help="view names <schema>.<prefix><table>")
    p.add_argument(
        "--retry-failed", action="store_true", help="retry sources a previous run could not read"
    )
    p.add_argument("--master", default="local[*]", help="Spark master of a local session")
    return p


def spark_session(master: str, *, delta: bool) -> SparkSession:
    """Databricks' session (classic or serverless) when there, else a local one."""
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        from pyspark.sql import SparkSession

        return iac_spark.register(SparkSession.builder.getOrCreate())
    return iac_spark.local_session(master, delta=delta)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    delta = args.engine == "spark" or args.catalog_name is not None or bool(args.views_schema)
    try:
        result = catalog.build(
            lambda: spark_session(args.master, delta=delta),  # started only when needed
            args.sources, args.out, dataset=args.dataset, kind="dicom", executor=args.executor,
            engine=args.engine, catalog_name=args.catalog_name, retry_failed=args.retry_failed,
            progress=print, **({"layout": args.layout} if args.layout else {}),
        )  # fmt: skip
        print(result.summary_table())
        if args.views_schema:
            views = catalog.publish_views(
                spark_session(args.master, delta=True), args.out,
                catalog_name=args.catalog_name, prefix=args.view_prefix, schema=args.views_schema,
            )  # fmt: skip
            print("views          ", ", ".join(views.values()))
    except IacSparkError as exc:
        print(f"ingest_dicom: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
