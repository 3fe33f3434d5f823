"""Executors: where the tasks of a build run (Spark, or in this process).

A build has two task phases (scan, pack). Each task is a plain picklable *spec* and a plain
function ``fn(spec, attempt) -> result``; the result is a small picklable commit message. An
executor runs every spec and returns one result per spec, in spec order, from **successful
attempts only**: a failed attempt's result never reaches the driver, and its files, named by
``attempt.attempt_id``, are ignored by the merge.

* :class:`LocalExecutor` runs the tasks one after another in this process (no JVM; laptops,
  tests, ``iac-spark build --executor local``).
* ``iac_spark.spark_executor.SparkExecutor`` runs them as Spark tasks
  (``spark.range(n, numPartitions=n).mapInArrow``), kept with the other Spark code.

Tests inject failures by wrapping an executor (see ``tests/executors.py``), never through
keyword arguments of the build.

Progress within long tasks: an executor reports a phase's progress when tasks *end* (Spark's
status tracker counts finished tasks, Python accumulators reach the driver only with a
finished task). So a task also reports the bytes it has done through a side channel any
executor carries: :class:`Metered` wraps the task function, the task adds its bytes to
:func:`task_meter` per record, and the meter writes them (at most every half second, one tiny
file per attempt, replaced atomically) under the build's staging, which tasks can see by the
build's contract. On the driver, :class:`TaskWatcher` polls those files and emits
:func:`progress_line` while the phase runs, the same way for the local executor, Spark and
Spark Connect.

Example:
    >>> LocalExecutor().run(lambda spec, attempt: spec * 10 + attempt.task_id, [1, 2], phase="demo")
    [10, 21]
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from ..progress import format_bytes, format_seconds

__all__ = [
    "Attempt",
    "Executor",
    "LocalExecutor",
    "Metered",
    "Progress",
    "TaskFn",
    "TaskMeter",
    "TaskWatcher",
    "read_meters",
    "task_meter",
]

S = TypeVar("S")
R = TypeVar("R")

#: A progress sink: one line at a time.
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Attempt:
    """Which attempt of which task is running.

    ``attempt_id`` is unique across all attempts of a build (Spark's task attempt id), so two
    attempts never write the same file; ``number`` is 0 for a task's first attempt.
    """

    task_id: int
    attempt_id: int
    number: int = 0


TaskFn = Callable[[S, Attempt], R]


class Executor(Protocol):
    """Runs a phase's tasks and returns the results of the successful attempts, in spec order."""

    name: str

    def parallelism(self) -> int:
        """How many tasks run at once (the default number of pack tasks)."""
        ...

    def run(
        self,
        fn: TaskFn[S, R],
        specs: Sequence[S],
        *,
        phase: str,
        planned_bytes: int | None = None,
        progress: Progress | None = None,
    ) -> list[R]:
        """Run ``fn`` over ``specs``; raises if a task fails for good."""
        ...

    def check_visible(self, path: str) -> None:
        """Raise :class:`~iac_spark.errors.BuildError` if tasks cannot see ``path``."""
        ...


def progress_line(
    phase: str, done: int, total: int, started: float, planned: int | None, moved: float | None
) -> str:
    """``pack: tasks 3/8, 120.0 MB of 1.1 GB, 40.1 MB/s, ETA 20s, 3s elapsed``.

    ``moved`` is the bytes processed so far (estimated from finished tasks when None).

    >>> progress_line("pack", 1, 4, time.monotonic(), None, None).split(",")[0]
    'pack: tasks 1/4'
    """
    elapsed = time.monotonic() - started
    line = f"{phase}: tasks {done}/{total}"
    if planned:
        moved = planned * done / max(total, 1) if moved is None else moved
        rate = moved / elapsed if elapsed > 0 else 0.0
        eta = (planned - moved) / rate if rate > 0 else None
        line += f", {format_bytes(moved)} of {format_bytes(planned)}, {format_bytes(rate)}/s"
        line += f", ETA {format_seconds(eta)}" if eta is not None else ""
    return line + f", {format_seconds(elapsed)} elapsed"


class LocalExecutor:
    """Runs every task in this process, in order.

    A task that raises is retried up to ``max_attempts`` attempts in all (like Spark's
    ``spark.task.maxFailures``), each with a new ``attempt_id``; then the error ends the build.
    """

    name = "local"

    def __init__(self, parallelism: int | None = None, *, max_attempts: int = 1) -> None:
        self._parallelism = parallelism or max(1, os.cpu_count() or 1)
        self.max_attempts = max(1, max_attempts)
        self._next_attempt = 0

    def __repr__(self) -> str:
        return "LocalExecutor()"

    def parallelism(self) -> int:
        return self._parallelism

    def run(
        self,
        fn: TaskFn[S, R],
        specs: Sequence[S],
        *,
        phase: str,
        planned_bytes: int | None = None,
        progress: Progress | None = None,
    ) -> list[R]:
        started = time.monotonic()
        out: list[R] = []
        for task_id, spec in enumerate(specs):
            for number in range(self.max_attempts):
                attempt = Attempt(task_id, self._next_attempt, number)
                self._next_attempt += 1
                try:
                    out.append(fn(spec, attempt))
                    break
                except Exception:
                    if number + 1 == self.max_attempts:
                        raise
            if progress is not None:
                progress(
                    progress_line(phase, task_id + 1, len(specs), started, planned_bytes, None)
                )
        return out

    def check_visible(self, path: str) -> None:
        return None  # same process, same filesystem


class TaskMeter:
    """The bytes one task attempt has done, kept in ``folder/t<task>-a<attempt>`` for the driver.

    ``add`` is cheap (a clock read per call); the file is rewritten at most every
    ``interval`` seconds and once more by ``finish``. The default meter (no folder) does nothing.
    """

    def __init__(
        self, folder: str | None = None, attempt: Attempt | None = None, *, interval: float = 0.5
    ) -> None:
        self.folder, self.attempt, self.interval = folder, attempt, interval
        self.done_bytes = 0
        self._written = -1.0

    def _write(self, finished: bool) -> None:
        if self.folder is None or self.attempt is None:
            return
        name = f"t{self.attempt.task_id:05d}-a{self.attempt.attempt_id}"
        path = os.path.join(self.folder, name)
        tmp = os.path.join(self.folder, f".{name}.tmp")
        try:
            os.makedirs(self.folder, exist_ok=True)
            with open(tmp, "w") as fh:
                fh.write(f"{self.done_bytes} {int(finished)}\n")
            os.replace(tmp, path)
        except OSError:
            pass  # progress is best effort: never fail a task over it
        self._written = time.monotonic()

    def add(self, n: int) -> None:
        """Count ``n`` more bytes done."""
        self.done_bytes += n
        if self.folder is not None and time.monotonic() - self._written >= self.interval:
            self._write(False)

    def finish(self) -> None:
        """The attempt's function returned: its task is done."""
        self._write(True)


_meter: contextvars.ContextVar[TaskMeter] = contextvars.ContextVar("iac_task_meter")
_NO_METER = TaskMeter()


def task_meter() -> TaskMeter:
    """The meter of the task running here (a no-op one outside :class:`Metered` tasks)."""
    return _meter.get(_NO_METER)


@dataclass(frozen=True)
class Metered(Generic[S, R]):
    """``fn`` with a :class:`TaskMeter` writing under ``folder`` (picklable, like ``fn``)."""

    fn: TaskFn[S, R]
    folder: str
    interval: float = 0.5

    def __call__(self, spec: S, attempt: Attempt) -> R:
        meter = TaskMeter(self.folder, attempt, interval=self.interval)
        token = _meter.set(meter)
        try:
            result = self.fn(spec, attempt)
        finally:
            _meter.reset(token)
        meter.finish()
        return result


def read_meters(folder: str) -> dict[int, tuple[int, bool]]:
    """task id → (bytes done, finished) of each task's latest attempt under ``folder``."""
    latest: dict[int, tuple[int, int, bool]] = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return {}
    for name in names:
        if not name.startswith("t") or "-a" not in name:
            continue
        try:
            task, attempt = (int(x) for x in name[1:].split("-a", 1))
            with open(os.path.join(folder, name)) as fh:
                done, finished = fh.read().split()
        except (OSError, ValueError):
            continue
        if task not in latest or attempt > latest[task][0]:
            latest[task] = (attempt, int(done), finished == "1")
    return {t: (d, f) for t, (_a, d, f) in latest.items()}


class TaskWatcher:
    """Emit ``phase`` progress lines from the :class:`TaskMeter` files under ``folder`` while
    the phase runs (a background thread; a line when the tasks or bytes moved, every
    ``interval`` seconds at most, and a last one on exit). ``planned`` is each task's planned
    bytes (a finished task counts all of them, a running one at most them)."""

    def __init__(
        self, folder: str, phase: str, planned: Sequence[int], emit: Progress, *,
        interval: float = 2.0,
    ) -> None:  # fmt: skip
        self.folder, self.phase, self.planned = folder, phase, list(planned)
        self.emit, self.interval = emit, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._last: tuple[int, int] | None = None

    def state(self) -> tuple[int, int]:
        """(tasks finished, bytes done) now."""
        meters = read_meters(self.folder)
        done = moved = 0
        for task, planned in enumerate(self.planned):
            n, finished = meters.get(task, (0, False))
            done += finished
            moved += planned if finished else min(n, planned)
        return done, moved

    def _tick(self) -> None:
        state = self.state()
        if state != self._last:
            self._last = state
            total = sum(self.planned)
            self.emit(
                progress_line(
                    self.phase, state[0], len(self.planned), self._started, total, state[1]
                )
            )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._tick()

    def __enter__(self) -> TaskWatcher:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="iac-task-watcher", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if exc_type is None:
            self._tick()


def stderr_progress(line: str) -> None:
    """The default progress sink of the CLI."""
    print(f"  … {line}", file=sys.stderr, flush=True)
