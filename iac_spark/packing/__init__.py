"""The build core, engine-free: plan → tasks on an executor → merge into ``.iac`` packs.

Example:
    >>> from iac_spark.packing import LocalExecutor, run_build
    >>> LocalExecutor().name
    'local'
"""

from __future__ import annotations

__all__ = [
    "DICOM",
    "BuildKind",
    "BuildResult",
    "BuildSettings",
    "Executor",
    "LocalExecutor",
    "SourceTally",
    "new_run_id",
    "run_build",
]

from .build import DICOM, BuildKind, BuildResult, BuildSettings, SourceTally, new_run_id, run_build
from .executor import Executor, LocalExecutor
