"""The Spark executor of the build core, and ``build_packs`` over a ``zipdcm`` DataFrame.

:class:`SparkExecutor` runs a phase's tasks as Spark tasks:
``spark.range(n, numPartitions=n).mapInArrow(...)`` gives exactly one Spark task per spec, the
spec list travels with the (cloudpickled) function, and only successful attempts' results
reach the driver (``collect``), which is what makes per-attempt staging files safe. It works on
classic sessions and over Spark Connect (no SparkContext needed).

:func:`build_packs` keeps the DataFrame entry point: the DataFrame (any ``zipdcm`` load, filtered
as the user likes) *is* the scan, written to staging by a Spark job; plan, pack tasks and merge
are the same core as every other build.

Example:
    >>> import iac_spark
    >>> spark = iac_spark.local_session()                                  # doctest: +SKIP
    >>> df = spark.read.format("zipdcm").load("demo_data")                 # doctest: +SKIP
    >>> result = iac_spark.build_packs(df, "demo_out", dataset="demo")     # doctest: +SKIP
    >>> print(result.summary())                                            # doctest: +SKIP
    run 20261122T210000Z-3f2a9c1d: 2 packs, 240 records (61.2 MB raw → 20.4 MB stored), ...
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from .errors import BuildError
from .inputs.scan import SourceCounts
from .packing.build import DICOM, BuildKind, BuildResult, BuildSettings, ScanPhase, build_from_scan
from .packing.executor import Attempt, Progress, TaskFn
from .packing.scanning import ScanTaskResult
from .progress import SparkProgress

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SparkExecutor", "build_packs"]

S = TypeVar("S")
R = TypeVar("R")


def _runner(fn: TaskFn[Any, Any], specs: Sequence[Any]) -> Any:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        attempt_id = ctx.taskAttemptId() if ctx is not None else 0
        number = ctx.attemptNumber() if ctx is not None else 0
        for batch in batches:
            ids, out = [], []
            for task_id in batch.column(0).to_pylist():
                result = fn(specs[task_id], Attempt(task_id, attempt_id, number))
                ids.append(task_id)
                out.append(pickle.dumps(result))
            yield pa.RecordBatch.from_arrays(
                [pa.array(ids, pa.int64()), pa.array(out, pa.binary())], names=["task", "result"]
            )

    return run


class SparkExecutor:
    """Run build tasks as Spark tasks on ``spark`` (classic or Spark Connect)."""

    name = "spark"

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def __repr__(self) -> str:
        return f"SparkExecutor({self.spark!r})"

    def parallelism(self) -> int:
        try:
            return int(self.spark.sparkContext.defaultParallelism)
        except Exception:  # Spark Connect has no SparkContext
            return os.cpu_count() or 2

    def run(
        self,
        fn: TaskFn[S, R],
        specs: Sequence[S],
        *,
        phase: str,
        planned_bytes: int | None = None,
        progress: Progress | None = None,
    ) -> list[R]:
        n = len(specs)
        if n == 0:
            return []
        job = self.spark.range(0, n, 1, n).mapInArrow(
            _runner(fn, list(specs)), "task long, result binary"
        )
        watch = (
            SparkProgress(self.spark, phase, planned_bytes=planned_bytes, emit=progress)
            if progress is not None
            else contextlib.nullcontext()
        )
        with watch:
            table = job.toArrow()
        by_task = dict(
            zip(table.column("task").to_pylist(), table.column("result").to_pylist(), strict=True)
        )
        if sorted(by_task) != list(range(n)):
            raise BuildError(f"{phase}: expected one result per task, got {sorted(by_task)}")
        return [pickle.loads(by_task[i]) for i in range(n)]

    def check_visible(self, path: str) -> None:
        return None  # see iac_spark.cluster for the shared-filesystem check


def _dataframe_scan(df: DataFrame, kind: BuildKind) -> ScanPhase:
    """The scan phase of :func:`build_packs`: a Spark job writes the DataFrame's rows to staging."""
    missing = [c for c in kind.plan_columns if c not in df.columns]
    if missing:
        raise BuildError(
            f"build_packs needs a {kind.name} scan DataFrame (spark.read.format(...)); "
            f"missing columns {missing}"
        )
    columns = [c for c in df.columns if c != "content"]  # members are re-read by the pack tasks

    def scan(scan_dir: str) -> list[ScanTaskResult]:
        def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            from pyspark import TaskContext

            ctx = TaskContext.get()
            part = ctx.partitionId() if ctx is not None else 0
            attempt = ctx.taskAttemptId() if ctx is not None else 0
            os.makedirs(scan_dir, exist_ok=True)
            path = os.path.join(scan_dir, f"scan-{part:05d}-a{attempt}.arrow")
            counts: dict[str, SourceCounts] = {}
            n = 0
            writer = None
            with pa.OSFile(path, "wb") as sink:
                for batch in batches:
                    if writer is None:
                        writer = pa.ipc.new_file(sink, batch.schema)
                    status = batch.column("status").to_pylist()
                    for p, st in zip(batch.column("path").to_pylist(), status, strict=True):
                        c = counts.setdefault(p, SourceCounts())
                        c.members += 1
                        if st == "skipped":
                            c.skipped += 1
                        elif st == "ok":
                            c.ok += 1
                        else:
                            c.errors += 1
                    kept = batch.filter(pc.not_equal(batch.column("status"), "skipped"))
                    writer.write_batch(kept)
                    n += kept.num_rows
                if writer is None:
                    schema = pa.schema([pa.field(c, pa.string()) for c in columns])
                    writer = pa.ipc.new_file(sink, schema)
                writer.close()
            result = ScanTaskResult(part, attempt, path, n, counts)
            yield pa.RecordBatch.from_arrays([pa.array([pickle.dumps(result)], pa.binary())], ["r"])

        table = df.select(*columns).mapInArrow(write, "r binary").toArrow()
        results = [pickle.loads(b) for b in table.column("r").to_pylist()]
        return sorted((r for r in results if r.rows or r.counts), key=lambda r: r.task_id)

    return scan


def build_packs(
    df: DataFrame,
    out: str,
    *,
    known: pa.Table | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
    **options: object,
) -> BuildResult:
    """Pack the members of a ``zipdcm`` DataFrame into ``OUT/packs/<dataset>/`` with Spark.

    The DataFrame is the scan (load it with ``includeSkipped=true`` for exact skipped counts);
    its rows are written to staging by one Spark job, then the build core plans, runs the pack
    tasks on the same session and merges (see :func:`iac_spark.packing.run_build`; ``options``
    are :class:`~iac_spark.packing.BuildSettings` fields such as ``dataset``). Error rows are
    not packed but returned in :attr:`BuildResult.issues`; identical duplicates are packed once
    and conflicting ones all kept (both reported). ``known`` (identity, raw CRC-32 of items
    already in the catalog) makes reruns skip what is packed. Raises :class:`BuildError` on
    failure, after removing everything this run wrote.
    """
    settings = BuildSettings.make(DICOM, **options)
    return build_from_scan(
        _dataframe_scan(df, DICOM), out, executor=SparkExecutor(df.sparkSession), kind=DICOM,
        settings=settings, known=known, run_id=run_id, progress=progress,
    )  # fmt: skip
