"""Databricks job entry: verify every pack and record against the catalog (fails the run on mismatch).

Local equivalent::

    python jobs/verify_catalog.py --out demo_out
"""

from __future__ import annotations

import argparse
import sys

from iac_spark import catalog


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    report = catalog.verify(args.out)
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
