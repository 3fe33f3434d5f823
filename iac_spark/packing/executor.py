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

Example:
    >>> LocalExecutor().run(lambda spec, attempt: spec * 10 + attempt.task_id, [1, 2], phase="demo")
    [10, 21]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ..progress import format_bytes, format_seconds

__all__ = ["Attempt", "Executor", "LocalExecutor", "Progress", "TaskFn"]

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


def stderr_progress(line: str) -> None:
    """The default progress sink of the CLI."""
    print(f"  … {line}", file=sys.stderr, flush=True)
