"""The Spark executor of the build core, and ``build_packs`` over a ``zipdcm`` DataFrame.

:class:`SparkExecutor` runs a phase's tasks as Spark tasks:
``spark.range(n, numPartitions=n).mapInArrow(...)`` gives exactly one Spark task per spec, the
spec list travels with the (cloudpickled) function, and only successful attempts' results
reach the driver (``collect``), which is what makes per-attempt staging files safe. It works on
classic sessions and over Spark Connect (no SparkContext needed: there the "driver" of the
build is this client process, which plans, merges and commits).

Before a build writes anything, :meth:`SparkExecutor.check_visible` proves that the Spark tasks
see OUT as this process does (one tiny job; see its docstring for when it is skipped), so a
build on a cluster whose executors cannot reach OUT fails up front with one sentence instead of
failing its tasks one by one.

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
import shutil
import socket
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from .errors import BuildError, OptionError
from .inputs.scan import SourceCounts
from .packing.build import (
    DICOM,
    TEXT,
    BuildKind,
    BuildResult,
    BuildSettings,
    ScanPhase,
    build_from_scan,
)
from .packing.executor import Attempt, Progress, TaskFn
from .packing.layout import staging_dir
from .packing.scanning import ScanTaskResult
from .progress import SparkProgress
from .session import is_connect

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "SparkExecutor",
    "VisibilityProbe",
    "build_packs",
    "build_text_packs",
    "check_probes",
    "probe_visibility",
]

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


#: At most this many tasks probe OUT's visibility (spread over the executors by the scheduler).
PROBE_TASKS = 8


@dataclass(frozen=True)
class VisibilityProbe:
    """What one probe task saw of the marker the driver wrote under ``OUT/_staging``.

    ``token`` is the marker's content as the task read it (None: it could not read it);
    ``reply`` the file the task wrote beside it for the driver to find (None: it could not).
    """

    host: str
    cwd: str
    token: str | None
    reply: str | None
    error: str | None = None


def probe_visibility(marker: str, attempt: Attempt) -> VisibilityProbe:
    """The probe task: read the driver's ``marker``, and write a reply file beside it."""
    host, cwd = socket.gethostname(), os.getcwd()
    try:
        with open(marker, encoding="utf-8") as fh:
            token = fh.read()
    except OSError as exc:
        return VisibilityProbe(host, cwd, None, None, f"{type(exc).__name__}: {exc}")
    reply = f"{marker}.reply-{attempt.task_id}-a{attempt.attempt_id}"
    try:
        with open(reply, "w", encoding="utf-8") as fh:
            fh.write(token)
    except OSError as exc:
        return VisibilityProbe(host, cwd, token, None, f"{type(exc).__name__}: {exc}")
    return VisibilityProbe(host, cwd, token, reply)


def check_probes(out: str, marker: str, token: str, probes: Sequence[VisibilityProbe]) -> None:
    """Raise :class:`BuildError` in one sentence unless every probe saw the driver's marker and
    the driver sees every probe's reply (pure: the driver's half of :meth:`check_visible`)."""
    for p in probes:
        where = f"a Spark task on {p.host} (working directory {p.cwd})"
        if p.token is None:
            problem = f"{where} cannot read the marker {marker} the driver wrote ({p.error})"
        elif p.token != token:
            problem = f"{where} finds another file at {marker}, so it sees a different directory"
        elif p.reply is None:
            problem = f"{where} cannot write beside the marker ({p.error})"
        elif not _holds(p.reply, token):
            problem = f"the driver cannot see the file {p.reply} that {where} wrote"
        else:
            continue
        raise BuildError(
            f"OUT {out} is not visible to the Spark executors as it is to the driver: {problem}; "
            "put OUT (and the inputs) on a filesystem that the driver and every executor "
            "share, such as a Databricks Volume (/Volumes/<catalog>/<schema>/<volume>/...) "
            "or a shared network mount."
        )


def _holds(path: str, token: str) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read() == token
    except OSError:
        return False


class SparkExecutor:
    """Run build tasks as Spark tasks on ``spark`` (classic or Spark Connect)."""

    name = "spark"

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self._parallelism: int | None = None

    def __repr__(self) -> str:
        return f"SparkExecutor({self.spark!r})"

    def parallelism(self) -> int:
        """The session's default parallelism (total executor cores, or ``local[N]``'s N).

        Spark Connect has no SparkContext to ask: there one tiny job counts the partitions
        that ``spark.range`` gets by default (which is that default parallelism), once per
        SparkExecutor; this process's CPU count is the last resort.
        """
        if self._parallelism is None:
            self._parallelism = self._find_parallelism()
        return self._parallelism

    def _find_parallelism(self) -> int:
        if not is_connect(self.spark):
            return int(self.spark.sparkContext.defaultParallelism)
        try:
            from pyspark.sql import functions as F

            row = (
                self.spark.range(0, 1 << 16)
                .select(F.spark_partition_id().alias("p"))
                .agg(F.max("p").alias("p"))
                .first()
            )
            return int(row["p"]) + 1 if row is not None and row["p"] is not None else 1
        except Exception:  # a server that refuses: fall back to this machine
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

    def shares_filesystem(self) -> bool:
        """True when the tasks provably run on this machine, as threads of this process's JVM.

        Only a classic session with a ``local`` / ``local[N]`` master: its tasks' Python
        workers are children of this process's JVM. ``local-cluster[...]`` and cluster masters
        run executors elsewhere (other JVMs, other working directories, other machines); over
        Spark Connect this process cannot know where the server runs (a local one, or a
        Databricks cluster reached from a laptop), so neither counts.
        """
        if is_connect(self.spark):
            return False
        master = str(self.spark.sparkContext.master)
        return master == "local" or master.startswith("local[")

    def check_visible(self, path: str) -> None:
        """Raise :class:`BuildError` unless the Spark tasks see the directory ``path`` (OUT)
        as this process does, before the build writes anything there.

        This process writes a marker holding a random token under ``OUT/_staging/``; one tiny
        job of up to :data:`PROBE_TASKS` tasks reads it back and writes a reply beside it,
        which this process then reads (both directions matter: the tasks write the staging
        files that this process merges). Skipped where :meth:`shares_filesystem` (classic
        ``local[N]``); always run over Spark Connect. The probe files are removed afterwards
        (a reply written where only the executors see it stays there).
        """
        if self.shares_filesystem():
            return
        out = os.path.abspath(path)
        token = uuid.uuid4().hex
        probe_dir = staging_dir(out, f"_visible-{token}")
        marker = os.path.join(probe_dir, "marker")
        try:
            os.makedirs(probe_dir, exist_ok=True)
            with open(marker, "w", encoding="utf-8") as fh:
                fh.write(token)
        except OSError as exc:
            raise BuildError(f"cannot write under OUT {out}: {exc}") from exc
        try:
            n = max(1, min(self.parallelism(), PROBE_TASKS))
            try:
                probes = self.run(probe_visibility, [marker] * n, phase="visibility check")
            except Exception as exc:
                raise BuildError(
                    f"the visibility check of OUT {out} failed as a Spark job: {exc}"
                ) from exc
            check_probes(out, marker, token, probes)
        finally:
            shutil.rmtree(probe_dir, ignore_errors=True)


def _dataframe_scan(df: DataFrame, kind: BuildKind, *, role: str = "source") -> ScanPhase:
    """The scan phase of :func:`build_packs`: a Spark job writes the DataFrame's rows to staging
    (``role`` ``"compressed"``: the teacher-compressed side of a pair build)."""
    missing = [c for c in kind.plan_columns if c not in df.columns]
    if missing:
        raise BuildError(
            f"building packs needs a {kind.name} scan DataFrame (spark.read.format(...)); "
            f"missing columns {missing}"
        )
    columns = [c for c in df.columns if c != "content"]  # members are re-read by the pack tasks
    prefix = "scan" if role == "source" else role

    def scan(scan_dir: str) -> list[ScanTaskResult]:
        def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            from pyspark import TaskContext

            ctx = TaskContext.get()
            part = ctx.partitionId() if ctx is not None else 0
            attempt = ctx.taskAttemptId() if ctx is not None else 0
            os.makedirs(scan_dir, exist_ok=True)
            path = os.path.join(scan_dir, f"{prefix}-{part:05d}-a{attempt}.arrow")
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
            result = ScanTaskResult(part, attempt, path, n, counts, role)
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


def build_text_packs(
    df: DataFrame,
    out: str,
    *,
    dataset: str = "default",
    layout: str = "clinical_text",
    compressed: DataFrame | None = None,
    known: pa.Table | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
    **options: object,
) -> BuildResult:
    """Pack the notes of a ``ziptext`` DataFrame into ``OUT/packs/<dataset>/`` with Spark.

    One record per patient in the ``clinical_text`` layout, or with
    ``layout="clinical_text_pair"`` each note paired on ``doc_id`` with its partner in
    ``compressed`` (a second ``ziptext`` DataFrame, e.g. of the teacher-compressed notes);
    notes without a partner on either side are reported in :attr:`BuildResult.issues` with
    stage ``unpaired``. The same core as :func:`build_packs` (plan, pack tasks on this session,
    merge); ``options`` are :class:`~iac_spark.packing.BuildSettings` fields. Raises
    :class:`BuildError` on failure, after removing everything this run wrote.

    Example::

        notes = spark.read.format("ziptext").option("includeSkipped", "true").load("demo_data/notes")
        result = iac_spark.build_text_packs(notes, "demo_out", dataset="notes")
    """
    settings = BuildSettings.make(TEXT, dataset=dataset, layout=layout, **options)
    if (compressed is not None) != (layout in TEXT.pair_layouts):
        raise OptionError(
            f"layout {layout!r} "
            + (
                "needs the compressed notes' DataFrame"
                if compressed is None
                else "takes no compressed notes"
            )
        )
    source = _dataframe_scan(df, TEXT)
    other = _dataframe_scan(compressed, TEXT, role="compressed") if compressed is not None else None

    def scan(scan_dir: str) -> list[ScanTaskResult]:
        return [*source(scan_dir), *(other(scan_dir) if other is not None else [])]

    return build_from_scan(
        scan, out, executor=SparkExecutor(df.sparkSession), kind=TEXT, settings=settings,
        known=known, run_id=run_id, progress=progress,
    )  # fmt: skip
