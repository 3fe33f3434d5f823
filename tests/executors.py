"""Test executors: failure injection lives here, never in the product's signatures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from iac_spark.packing.executor import Attempt, Executor, Progress, TaskFn


class InjectedTaskFailure(RuntimeError):
    """Raised on purpose after a task did its work, to prove retries leave no trace."""


class FailingExecutor:
    """Wraps ``inner``: in ``phase``, task ``t`` fails its first ``fail[t]`` attempts *after*
    running (so its files exist, as after a crash at the very end of a task)."""

    def __init__(self, inner: Executor, fail: Mapping[int, int], *, phase: str = "pack") -> None:
        self.inner = inner
        self.fail = dict(fail)
        self.phase = phase
        self.name = f"failing-{inner.name}"

    def parallelism(self) -> int:
        return self.inner.parallelism()

    def check_visible(self, path: str) -> None:
        self.inner.check_visible(path)

    def run(
        self,
        fn: TaskFn[Any, Any],
        specs: Sequence[Any],
        *,
        phase: str,
        planned_bytes: int | None = None,
        progress: Progress | None = None,
    ) -> list[Any]:
        if phase != self.phase:
            return self.inner.run(
                fn, specs, phase=phase, planned_bytes=planned_bytes, progress=progress
            )
        fail = self.fail

        def failing(spec: Any, attempt: Attempt) -> Any:
            result = fn(spec, attempt)
            if attempt.number < fail.get(attempt.task_id, 0):
                raise InjectedTaskFailure(
                    f"injected failure of {phase} task {attempt.task_id} attempt {attempt.number}"
                )
            return result

        return self.inner.run(
            failing, specs, phase=phase, planned_bytes=planned_bytes, progress=progress
        )
