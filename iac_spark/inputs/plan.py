"""Plan scan partitions on the driver, balanced by weight, splitting big zips by member ranges.

Weights come from :func:`~iac_spark.inputs.survey.survey` (one central-directory read per zip).

Example:
    >>> from iac_spark.inputs.discover import InputFile
    >>> from iac_spark.inputs.survey import survey
    >>> files = [InputFile("/d/a.dcm", 1000, 0.0, "file"), InputFile("/d/b.dcm", 1000, 0.0, "file")]
    >>> [len(p) for p in plan_partitions(survey(files), num_partitions=2)]
    [1, 1]
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .survey import Source

__all__ = ["ScanUnit", "default_parallelism", "plan_partitions", "plan_units"]


@dataclass(frozen=True)
class ScanUnit:
    """A picklable piece of scan work: a whole bare file, or members ``[start, stop)`` of a zip.

    ``start``/``stop`` index the members of :func:`~iac_spark.inputs.archive.open_archive`
    (``stop=None``: to the end); ``weight`` is what the planner balanced on. Kind ``"skip"``:
    an input listed but never opened (one skipped member).
    """

    path: str
    kind: Literal["zip", "file", "skip"]
    start: int = 0
    stop: int | None = None
    weight: int = 0


def default_parallelism() -> int:
    """Partitions to aim for when the user gave none: one per local core, at least 2.

    Every partition costs Spark a fixed ~0.1 s of task and Python-worker overhead, and the
    planner balances partitions by weight, so one per core is the fastest for small inputs;
    large inputs get ``total / maxPartitionBytes`` partitions anyway.
    """
    return max(2, os.cpu_count() or 1)


def plan_units(sources: Sequence[Source], target: int) -> list[ScanUnit]:
    """Cut inputs into units of at most ``target`` weight (a zip splits by member ranges)."""
    units: list[ScanUnit] = []
    for s in sources:
        if s.weights is None:  # bare file, or unreadable zip: the scan reports its error row
            units.append(ScanUnit(s.path, s.file.kind, weight=s.total_weight))
            continue
        start, acc = 0, 0
        for i, w in enumerate(s.weights):
            if acc and acc + w > target:
                units.append(ScanUnit(s.path, "zip", start, i, acc))
                start, acc = i, 0
            acc += w
        units.append(ScanUnit(s.path, "zip", start, None, acc))
    return units


def plan_partitions(
    sources: Sequence[Source],
    *,
    max_partition_bytes: int = 128 * 1024**2,
    num_partitions: int | None = None,
) -> list[list[ScanUnit]]:
    """Group units into partitions of about equal weight, keeping input order.

    Without ``num_partitions`` the count is the larger of (bytes on disk) / ``max_partition_bytes``
    and :func:`default_parallelism` (so small inputs still use every core). The count comes from
    bytes, the balance from weights: a member's fixed cost must not multiply the partitions (each
    costs a task's fixed overhead), only spread them evenly.
    """
    if not sources:
        return []
    total = sum(s.total_weight for s in sources)
    on_disk = sum(s.file.size for s in sources)
    wanted = num_partitions or max(math.ceil(on_disk / max_partition_bytes), default_parallelism())
    target = max(1, math.ceil(total / wanted))
    units = plan_units(sources, target)
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
