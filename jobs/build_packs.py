"""Databricks job entry: incremental build of packs + catalog from archives on a Volume.

Runs on the job's existing SparkSession (serverless or classic, DBR 15.4 LTS+). Exits
non-zero only on a fatal failure; error rows are recorded in the catalog's ``errors``.

Local equivalent::

    python jobs/build_packs.py --sources demo_data --out demo_out --dataset demo
"""

from __future__ import annotations

import argparse
import sys

import iac_spark
from iac_spark import catalog


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sources", required=True, help="comma-separated folders, globs or zips")
    p.add_argument("--out", required=True)
    p.add_argument("--dataset", default="default")
    args = p.parse_args(argv)
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession() or iac_spark.local_session()
    iac_spark.register(spark)
    sources = [s for s in args.sources.split(",") if s]
    result = catalog.build(spark, sources, args.out, dataset=args.dataset, progress=print)
    print(result.summary_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
