"""Progress lines for long Spark jobs: tasks done, bytes, rate and ETA.

:class:`SparkProgress` hands one line every few seconds to ``emit`` (default: print to
stderr) while a job runs. On a classic session it polls the SparkContext's status tracker from
a background thread; a Spark Connect session has no SparkContext, so there it registers a
progress handler, which the Connect client calls with the server's stage reports while the
job's results stream in. ``planned_bytes`` lets it turn finished tasks into bytes, rate and ETA.

Example:
    >>> from iac_spark.progress import format_bytes
    >>> format_bytes(1536 * 1024)
    '1.5 MB'
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from .session import is_connect

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.connect.shell.progress import ProgressHandler

__all__ = ["SparkProgress", "format_bytes", "format_seconds"]


def format_bytes(n: float) -> str:
    """Human-readable size (binary units)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def format_seconds(seconds: float) -> str:
    """``1m05s`` style durations.

    >>> format_seconds(65), format_seconds(3700)
    ('1m05s', '1h01m')
    """
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class SparkProgress:
    """Context manager printing ``label: tasks a/b, bytes, rate, ETA`` while Spark works."""

    def __init__(
        self,
        spark: SparkSession,
        label: str,
        *,
        planned_bytes: int | None = None,
        emit: Callable[[str], None] | None = None,
        interval: float = 3.0,
    ) -> None:
        self.spark = spark
        self.label = label
        self.planned = planned_bytes
        self.emit = emit or (lambda line: print(line, file=sys.stderr, flush=True))
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._connect = is_connect(spark)
        self._operation: str | None = None  # Connect: the operation id of our job
        self._last = ""  # "label: tasks a/b" of the last line emitted
        self._emitted = 0.0

    def _line(self) -> str | None:
        """The status tracker's tasks done / total of the active jobs (classic sessions)."""
        try:
            tracker = self.spark.sparkContext.statusTracker()
            done = total = 0
            for job_id in tracker.getActiveJobsIds():
                job = tracker.getJobInfo(job_id)
                if job is None:
                    continue
                for stage_id in job.stageIds:
                    stage = tracker.getStageInfo(stage_id)
                    if stage is not None:
                        done += stage.numCompletedTasks
                        total += stage.numTasks
        except Exception:  # no status tracker (a stopped context): stay quiet
            return None
        return self._format(done, total)

    def _format(self, done: int, total: int) -> str | None:
        if total == 0:
            return None
        elapsed = time.monotonic() - self._started
        line = f"{self.label}: tasks {done}/{total}"
        if self.planned:
            moved = self.planned * done / total
            rate = moved / elapsed if elapsed > 0 else 0.0
            eta = (self.planned - moved) / rate if rate > 0 else None
            line += (
                f", {format_bytes(moved)} of {format_bytes(self.planned)}, {format_bytes(rate)}/s"
            )
            line += f", ETA {format_seconds(eta)}" if eta is not None else ""
        return line + f", {format_seconds(elapsed)} elapsed"

    def _connect_update(
        self,
        stages: Iterable[Any] | None = None,
        inflight_tasks: int = 0,
        operation_id: str | None = None,
        done: bool = False,
    ) -> None:
        """Spark Connect progress handler: the server's stage reports of our operation.

        Handlers are per session, so the first operation seen while active is ours and
        others' (another thread's queries on the same session) are ignored. A line goes out
        when the task count moved, at most every ``interval`` seconds, and once all are done.
        """
        if operation_id is not None:
            if self._operation is None:
                self._operation = operation_id
            elif operation_id != self._operation:
                return
        stages = list(stages or [])
        finished = sum(int(st.num_completed_tasks) for st in stages)
        total = sum(int(st.num_tasks) for st in stages)
        line = self._format(finished, total)
        if line is None or line.split(",")[0] == self._last:
            return
        now = time.monotonic()
        if done or finished == total or now - self._emitted >= self.interval:
            self.emit(line)
            self._last, self._emitted = line.split(",")[0], now

    def _run(self) -> None:
        last = ""
        while not self._stop.wait(self.interval):
            line = self._line()
            if line and line.split(",")[0] != last:  # only when the task count moved
                self.emit(line)
                last = line.split(",")[0]

    def __enter__(self) -> SparkProgress:
        self._started = self._emitted = time.monotonic()
        if self._connect:
            self.spark.registerProgressHandler(cast("ProgressHandler", self._connect_update))
        else:
            self._thread = threading.Thread(
                target=self._run, name="iac-spark-progress", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._connect:
            self.spark.removeProgressHandler(cast("ProgressHandler", self._connect_update))
        if self._thread is not None:
            self._thread.join(timeout=5)
