"""``build_packs``: a ``zipdcm`` DataFrame → published ``.iac`` packs (+ a manifest).

Flow (DESIGN.md "Packs"):

1. collect the header-only scan columns (no ``meta``, no ``content``) on the driver;
2. plan: errors, duplicates and conflicts; whole patients onto tasks, balanced by bytes;
3. run one Spark task per plan task (``spark.range(n, numPartitions=n).mapInArrow``):
   each reads its members straight from the archives, so the bytes move once and
   never through a shuffle, and writes segments named by task attempt;
4. merge the segments of the successful attempts (the only ones whose results Spark
   returns) into packs; remove staging. Any failure removes what this run published.

Example:
    >>> import iac_spark
    >>> spark = iac_spark.local_session()                                  # doctest: +SKIP
    >>> df = spark.read.format("zipdcm").load("demo_data")                 # doctest: +SKIP
    >>> result = iac_spark.build_packs(df, "demo_out", dataset="demo")     # doctest: +SKIP
    >>> print(result.summary())                                            # doctest: +SKIP
    run 20261122T210000Z-3f2a9c1d: 2 packs, 240 records (61.2 MB raw → 20.4 MB stored), 0 duplicates, 0 errors
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import BuildError, OptionError
from ..progress import SparkProgress
from .layout import staging_dir
from .merge import DEFAULT_PACK_TARGET_BYTES, PackInfo, merge_segments, remove_tree
from .plan import PLAN_COLUMNS, BuildPlan, Conflict, Duplicate, ErrorRecord, plan_build
from .shard import DEFAULT_SHARD_TARGET_BYTES, SegmentInfo
from .task import TaskResult, run_task, write_task_spec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["BuildResult", "build_packs", "new_run_id"]

_DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def new_run_id() -> str:
    """``<UTC time>-<8 hex>``: sortable by time, unique across concurrent builds."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass
class BuildResult:
    """What a build published and everything it did not pack (nothing is dropped)."""

    run_id: str
    out: str
    dataset: str
    packs: list[PackInfo]
    errors: list[ErrorRecord]
    duplicates: list[Duplicate]
    conflicts: list[Conflict]
    scanned: int
    raw_bytes: int
    seconds: float
    scan_rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def num_records(self) -> int:
        return sum(p.num_records for p in self.packs)

    @property
    def stored_bytes(self) -> int:
        return sum(p.data_bytes for p in self.packs)

    def summary(self) -> str:
        """One line for logs and the CLI."""
        mb = 1024**2
        return (
            f"run {self.run_id}: {len(self.packs)} packs, {self.num_records} records "
            f"({self.raw_bytes / mb:.1f} MB raw → {self.stored_bytes / mb:.1f} MB stored), "
            f"{len(self.duplicates)} duplicates, {len(self.conflicts)} conflicts, "
            f"{len(self.errors)} errors, {self.seconds:.1f} s"
        )

    def manifest(self) -> dict[str, Any]:
        """JSON-ready manifest of the packs and their index rows (the catalog's input)."""
        return {
            "run_id": self.run_id,
            "dataset": self.dataset,
            "packs": [
                {
                    "pack_id": p.pack_id,
                    "path": p.path,
                    "num_records": p.num_records,
                    "num_patients": p.num_patients,
                    "num_series": p.num_series,
                    "data_bytes": p.data_bytes,
                    "file_bytes": p.file_bytes,
                    "published_by": p.published_by,
                    "index": p.index.to_pylist(),
                }
                for p in self.packs
            ],
            "errors": [e.__dict__ for e in self.errors],
            "duplicates": [d.__dict__ for d in self.duplicates],
            "conflicts": [
                {"sop_instance_uid": c.sop_instance_uid, "members": c.members}
                for c in self.conflicts
            ],
        }


def _runner(
    staging: str, target: int, level: int, fail: dict[int, int]
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        attempt_id = ctx.taskAttemptId() if ctx is not None else 0
        attempt_number = ctx.attemptNumber() if ctx is not None else 0
        for batch in batches:
            out = []
            for task_id in batch.column(0).to_pylist():
                spec = os.path.join(staging, "plan", f"task-{task_id:05d}.json")
                result = run_task(
                    spec, staging, task_id=task_id, attempt_id=attempt_id,
                    shard_target_bytes=target, zstd_level=level,
                    fail_after_writing=attempt_number < fail.get(task_id, 0),
                )  # fmt: skip
                out.append(pickle.dumps(result))
            yield pa.RecordBatch.from_arrays([pa.array(out, type=pa.binary())], names=["result"])

    return run


#: Raw input bytes per pack task by default: enough for several full segments, small enough
#: to balance and to retry cheaply.
TASK_RAW_BYTES = 2 * 1024**3


def _default_tasks(spark: SparkSession, raw_bytes: int) -> int:
    """One task per core, or one per :data:`TASK_RAW_BYTES` of input when that is more."""
    try:
        parallelism = int(spark.sparkContext.defaultParallelism)
    except Exception:  # Spark Connect has no SparkContext
        parallelism = os.cpu_count() or 2
    return max(parallelism, math.ceil(raw_bytes / TASK_RAW_BYTES))


def _check(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise OptionError(f"{name} must be a positive integer, got {value!r}")
    return value


def build_packs(
    df: DataFrame,
    out: str,
    *,
    dataset: str = "default",
    shard_target_bytes: int = DEFAULT_SHARD_TARGET_BYTES,
    pack_target_bytes: int = DEFAULT_PACK_TARGET_BYTES,
    zstd_level: int = 3,
    num_tasks: int | None = None,
    known: Mapping[str, Iterable[int]] | None = None,
    run_id: str | None = None,
    progress: Callable[[str], None] | None = None,
    _fail_task_attempts: Mapping[int, int] | Iterable[int] = (),
) -> BuildResult:
    """Pack the members of a ``zipdcm`` DataFrame into ``OUT/packs/<dataset>/``.

    Works with or without the ``content`` column: tasks always read members straight
    from their archives (bytes are never shuffled). Error rows are not packed but
    returned in :attr:`BuildResult.errors`; identical duplicates are packed once and
    conflicting ones all kept (both reported). ``known`` (SOPInstanceUID → CRC-32s
    already in the catalog) makes reruns skip what is packed. ``_fail_task_attempts``
    is for tests: ``{task_id: n}`` makes that task's first ``n`` attempts fail after writing
    their segments (a plain list of ids means ``n=1``).
    Raises :class:`BuildError` on failure, after removing everything this run wrote.
    """
    started = time.perf_counter()
    if not _DATASET_RE.match(dataset):
        raise OptionError(
            f"dataset must match {_DATASET_RE.pattern} (it becomes a folder name), got {dataset!r}"
        )
    _check("shard_target_bytes", shard_target_bytes)
    _check("pack_target_bytes", pack_target_bytes)
    if not 1 <= zstd_level <= 22:
        raise OptionError(f"zstd_level must be between 1 and 22, got {zstd_level!r}")
    missing = [c for c in PLAN_COLUMNS if c not in df.columns]
    if missing:
        raise BuildError(f"build_packs needs a zipdcm DataFrame; missing columns {missing}")
    say = progress or (lambda _msg: None)
    out = os.path.abspath(out)
    run_id = run_id or new_run_id()
    staging = staging_dir(out, run_id)
    published: list[str] = []
    spark = df.sparkSession
    try:
        with SparkProgress(spark, "scan", emit=progress) if progress else contextlib.nullcontext():
            scan_rows = df.select(*PLAN_COLUMNS).toArrow().to_pylist()
        say(f"scanned {len(scan_rows)} members")
        raw_total = sum(r["size"] or 0 for r in scan_rows if r["error"] is None)
        n = num_tasks or _default_tasks(spark, raw_total)
        plan: BuildPlan = plan_build(scan_rows, num_tasks=n, known=known)
        os.makedirs(staging, exist_ok=True)
        for task_id, records in enumerate(plan.tasks):
            write_task_spec(staging, task_id, records)
        say(
            f"packing {plan.num_records} records ({plan.raw_bytes / 1024**2:.1f} MB) in {len(plan.tasks)} tasks"
        )
        results: list[TaskResult] = []
        if plan.tasks:
            fail = (
                dict(_fail_task_attempts)
                if isinstance(_fail_task_attempts, Mapping)
                else dict.fromkeys(_fail_task_attempts, 1)
            )
            runner = _runner(staging, shard_target_bytes, zstd_level, fail)
            ntasks = len(plan.tasks)
            job = spark.range(0, ntasks, 1, ntasks).mapInArrow(runner, "result binary")
            with (
                SparkProgress(spark, "pack", planned_bytes=plan.raw_bytes, emit=progress)
                if progress
                else contextlib.nullcontext()
            ):
                rows = job.collect()
            results = [pickle.loads(r["result"]) for r in rows]
        if sorted(r.task_id for r in results) != list(range(len(plan.tasks))):
            raise BuildError(
                f"expected one result per task, got tasks {sorted(r.task_id for r in results)}"
            )
        segments: list[SegmentInfo] = [s for r in results for s in r.segments]
        packs = merge_segments(
            segments, out, dataset, run_id, pack_target_bytes=pack_target_bytes, published=published
        )
    except Exception as exc:
        for path in published:
            if os.path.exists(path):
                os.remove(path)
        _remove_staging(staging)
        if isinstance(exc, (BuildError, OptionError)):
            raise
        raise BuildError(
            f"build {run_id} failed and published nothing: {type(exc).__name__}: {exc}"
        ) from exc
    _remove_staging(staging)
    result = BuildResult(
        run_id=run_id, out=out, dataset=dataset, packs=packs,
        errors=plan.errors + [e for r in results for e in r.errors],
        duplicates=plan.duplicates, conflicts=plan.conflicts, scanned=len(scan_rows),
        raw_bytes=sum(r.raw_bytes for r in results), seconds=time.perf_counter() - started,
        scan_rows=scan_rows,
    )  # fmt: skip
    say(result.summary())
    return result


def _remove_staging(staging: str) -> None:
    remove_tree(staging)
    with contextlib.suppress(OSError):  # OUT/_staging, if no other build is running
        os.rmdir(os.path.dirname(staging))


def write_manifest(result: BuildResult, path: str) -> None:
    """Write :meth:`BuildResult.manifest` as JSON (UTF-8)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(result.manifest(), fh, ensure_ascii=False, default=str)
