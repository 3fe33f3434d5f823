"""Databricks job entry point: incremental ingest of clinical notes (``*.txt``) into text packs.

Notes in zips (nested, GBK names), folders or bare files, laid out as
``INSTITUTION/PATIENT_ID/ENCOUNTER/DOCTYPE_YYYYMMDDHHMMSS.txt`` (or ``--path-pattern``), become
``clinical_text`` packs (one record per patient), or with ``--layout clinical_text_pair`` and
``--compressed`` pairs with their teacher-compressed versions. A patient who gets new notes is
rebuilt with the earlier ones. ``--views-schema`` (re)publishes the analysts' views after it.

Exit codes (as ``iac-spark``): 0 success, 2 fatal (bad arguments, failed build or commit).

Locally, with no JVM::

    python jobs/ingest_text.py --sources demo_data/notes --out demo_out --executor local
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from iac_spark import jobs


def parser() -> argparse.ArgumentParser:
    """The job's arguments (``tests/test_bundle.py`` checks the bundle's parameters against it)."""
    p = jobs.job_parser("ingest_text", __doc__)
    jobs.add_ingest_arguments(
        p, sources="folders, globs, zips or .txt files", dataset="notes",
        layouts=("clinical_text", "clinical_text_pair"),
    )  # fmt: skip
    p.add_argument(
        "--compressed", nargs="+", default=None,
        help="with --layout clinical_text_pair: the compressed notes (same relative paths)",
    )  # fmt: skip
    p.add_argument("--encoding", default=None, help="force one encoding (default: detect)")
    p.add_argument("--path-pattern", default=None, help="regex with named groups for the fields")
    jobs.add_catalog_arguments(p, job="ingest")
    jobs.add_master_argument(p)
    return p


def ingest(args: argparse.Namespace) -> int:
    text_options: dict[str, Any] = {}
    if args.encoding:
        text_options["encoding"] = args.encoding
    if args.path_pattern:
        text_options["path_pattern"] = args.path_pattern
    return jobs.ingest(
        args, kind="text", compressed=args.compressed or (), text_options=text_options
    )


def main(argv: Sequence[str] | None = None) -> int:
    return jobs.run_job(parser(), ingest, argv)


if __name__ == "__main__":
    sys.exit(main())
