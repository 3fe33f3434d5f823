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
import sys
from collections.abc import Sequence

from iac_spark import jobs


def parser() -> argparse.ArgumentParser:
    """The job's arguments (``tests/test_bundle.py`` checks the bundle's parameters against it)."""
    p = jobs.job_parser("ingest_dicom", __doc__)
    jobs.add_ingest_arguments(
        p, sources="folders, globs, zips or .dcm files", dataset="default",
        layouts=("dicom_p10", "dicom_patient"),
    )  # fmt: skip
    jobs.add_catalog_arguments(p, job="ingest")
    p.add_argument(
        "--retry-failed", action="store_true", help="retry sources a previous run could not read"
    )
    jobs.add_master_argument(p)
    return p


def ingest(args: argparse.Namespace) -> int:
    return jobs.ingest(args, kind="dicom", retry_failed=args.retry_failed)


def main(argv: Sequence[str] | None = None) -> int:
    return jobs.run_job(parser(), ingest, argv)


if __name__ == "__main__":
    sys.exit(main())
