"""Databricks job entry point: verify the packs, vacuum unreferenced files, compact the catalog.

Steps (``--step``, default all, in this order): ``verify`` checks every committed pack's
header and every record's CRC-32 against the catalog (``--decode``: decodes every record too);
``vacuum`` removes pack files no committed run references and stale staging folders (past
their grace period; ``--dry-run`` only lists them); ``optimize`` compacts the small files of
the catalog's Delta tables (``OPTIMIZE`` on Spark Delta, ``optimize.compact()`` on delta-rs).
Vacuum is skipped when verify found problems.

Exit codes (as ``iac-spark``): 0 success, 1 verify found problems, 2 fatal.

Locally, with no JVM::

    python jobs/maintenance.py --out demo_out
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from iac_spark import catalog, jobs
from iac_spark.catalog.spark_delta import optimize_tables
from iac_spark.errors import CatalogError

STEPS = ("verify", "vacuum", "optimize")


def parser() -> argparse.ArgumentParser:
    """The job's arguments (``tests/test_bundle.py`` checks the bundle's parameters against it)."""
    p = jobs.job_parser("maintenance", __doc__)
    jobs.add_out_argument(p)
    p.add_argument("--step", choices=(*STEPS, "all"), default="all", help="one step, or all")
    p.add_argument("--decode", action="store_true", help="verify: decode every record as well")
    p.add_argument("--dry-run", action="store_true", help="vacuum: list, remove nothing")
    jobs.add_catalog_arguments(p, job="maintenance")
    jobs.add_master_argument(p)
    return p


def maintain(args: argparse.Namespace) -> int:
    steps = STEPS if args.step == "all" else (args.step,)
    spark_engine = jobs.uses_spark_delta(args)
    # the same store for every step: vacuum must see the tables the builds commit to
    store = catalog.catalog_store(
        args.out, spark=jobs.spark_session(args.master, delta=True) if spark_engine else None,
        engine="spark" if spark_engine else "delta-rs", catalog_name=args.catalog_name,
    )  # fmt: skip
    if not store.exists():  # vacuum would take every pack for unreferenced
        raise CatalogError(
            f"no catalog at {store.location('runs')}: check --out, --engine and --catalog-name"
        )
    if "verify" in steps:
        report = catalog.verify(args.out, decode=args.decode, store=store)
        print(report)
        if not report.ok:
            return 1
    if "vacuum" in steps:
        print(catalog.vacuum(args.out, dry_run=args.dry_run, store=store))
    if "optimize" in steps:
        for name, metrics in optimize_tables(store).items():
            print(f"optimize {name:<10} {metrics}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return jobs.run_job(parser(), maintain, argv)


if __name__ == "__main__":
    sys.exit(main())
