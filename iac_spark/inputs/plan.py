"""Plan scan partitions on the driver, balanced by bytes, splitting big zips by member ranges.

A member's weight is its compressed size plus a fixed per-member cost
(:data:`MEMBER_COST`), because a metadata scan spends about the same time on
every header whatever the pixel size.

Example:
    >>> from iac_spark.inputs.discover import InputFile
    >>> files = [InputFile("/d/a.dcm", 1000, 0.0, "file"), InputFile("/d/b.dcm", 1000, 0.0, "file")]
    >>> [len(p) for p in plan_partitions(files, num_partitions=2)]
    [1, 1]
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Sequence

from .archives import list_members
from .discover import InputFile
from .scan import ScanUnit

__all__ = ["MEMBER_COST", "default_parallelism", "plan_partitions", "plan_units"]

#: Weight added per member (bytes-equivalent of parsing one header).
MEMBER_COST = 64 * 1024


def default_parallelism() -> int:
    """Partitions to aim for when the user gave none: one per local core, at least 2.

    Every partition costs Spark a fixed ~0.1 s of task and Python-worker overhead, and the
    planner balances partitions by weight, so one per core is the fastest for small inputs;
    large inputs get ``total / maxPartitionBytes`` partitions anyway.
    """
    return max(2, os.cpu_count() or 1)


def _zip_weights(path: str) -> list[int] | None:
    try:
        with zipfile.ZipFile(path) as zf:
            return [m.compress_size + MEMBER_COST for m in list_members(zf)]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None


def plan_units(files: Sequence[InputFile], target: int) -> list[ScanUnit]:
    """Cut inputs into units of at most ``target`` weight (a zip splits by member ranges)."""
    units: list[ScanUnit] = []
    for f in files:
        if f.kind == "file":
            units.append(ScanUnit(f.path, "file", weight=f.size + MEMBER_COST))
            continue
        weights = _zip_weights(f.path)
        if weights is None:  # unreadable: one unit, the executor reports the error row
            units.append(ScanUnit(f.path, "zip", weight=f.size + MEMBER_COST))
            continue
        start, acc = 0, 0
        for i, w in enumerate(weights):
            if acc and acc + w > target:
                units.append(ScanUnit(f.path, "zip", start, i, acc))
                start, acc = i, 0
            acc += w
        units.append(ScanUnit(f.path, "zip", start, None, acc))
    return units


def plan_partitions(
    files: Sequence[InputFile],
    *,
    max_partition_bytes: int = 128 * 1024**2,
    num_partitions: int | None = None,
) -> list[list[ScanUnit]]:
    """Group units into partitions of about equal weight, keeping input order.

    Without ``num_partitions`` the count is the larger of ``total / max_partition_bytes``
    and :func:`default_parallelism` (so small inputs still use every core).
    """
    if not files:
        return []
    total = sum(f.size + MEMBER_COST for f in files)
    wanted = num_partitions or max(math.ceil(total / max_partition_bytes), default_parallelism())
    target = max(1, min(max_partition_bytes, math.ceil(total / wanted)))
    units = plan_units(files, target)
    wanted = min(wanted, len(units))
    share = sum(u.weight for u in units) / wanted
    parts: list[list[ScanUnit]] = [[]]
    acc = 0.0
    for u in units:
        if parts[-1] and acc + u.weight / 2 > share and len(parts) < wanted:
            parts.append([])
            acc = 0.0
        parts[-1].append(u)
        acc += u.weight
    return parts
