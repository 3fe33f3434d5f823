"""The build core: sources → scan tasks → plan → pack tasks → merge → published packs.

One orchestration for every payload kind and layout, engine-free (DESIGN.md "Build core"):

1. **scan**: the sources' units (planned from one central-directory read per zip) run as scan
   tasks on the executor; each writes its rows to ``OUT/_staging/<run_id>/scan/`` and reports
   exact per-source counts (skipped members of nested zips included);
2. **plan** (driver, columnar): errors, duplicates and conflicts; whole patients onto tasks,
   balanced by bytes; task files under ``OUT/_staging/<run_id>/tasks/``;
3. **pack**: one pack task per plan task on the executor; each reads its members straight
   from the archives (the bytes move once, never through the driver) and writes segments named
   by task attempt;
4. **merge**: the segments of the successful attempts (the only results an executor returns)
   become packs under ``OUT/packs/<dataset>/``. Any failure removes what this run published.

Every member ends in exactly one fate, and the build checks it per source before it returns:
``members == packed + duplicates + errors + skipped``.

Example:
    >>> from iac_spark.packing import LocalExecutor, run_build                       # doctest: +SKIP
    >>> from iac_spark.inputs import discover, survey                                # doctest: +SKIP
    >>> result = run_build(survey(discover(["demo_data"])), "demo_out", executor=LocalExecutor())  # doctest: +SKIP
    >>> print(result.summary())                                                      # doctest: +SKIP
    run 20261122T210000123456Z-3f2a9c1d: 1 packs, 240 records (61.2 MB raw → 20.4 MB stored), 0 duplicates, ...
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from ..dicom.rows import DicomParser
from ..errors import BuildError, OptionError
from ..inputs.discover import normalize_path
from ..inputs.limits import InputLimits
from ..inputs.plan import plan_partitions
from ..inputs.scan import MemberParser
from ..inputs.survey import Source
from ..text.rows import TextParser
from .executor import Executor, Metered, Progress, TaskFn, TaskWatcher
from .layout import LAYOUTS, RecordCodec, staging_dir
from .merge import DEFAULT_PACK_TARGET_BYTES, PackInfo, merge_segments, remove_tree
from .patient_task import FALLBACKS, run_patient_task
from .plan import (
    CONFLICT_SCHEMA,
    DICOM_PLAN,
    DUPLICATE_SCHEMA,
    ISSUE_SCHEMA,
    BuildPlan,
    PlanKind,
    plan_build,
)
from .scanning import ScanTaskResult, ScanTaskSpec, read_scan_columns, run_scan_task
from .shard import DEFAULT_SHARD_TARGET_BYTES
from .task import PackTaskSpec, RecordSource, TaskResult, dicom_members, run_pack_task
from .text import TEXT_PLAN, pair_patients, plan_pairs, text_patients, write_carry

__all__ = [
    "DICOM",
    "TEXT",
    "BuildKind",
    "BuildResult",
    "BuildSettings",
    "ScanPhase",
    "SourceTally",
    "build_from_scan",
    "new_run_id",
    "read_run_marker",
    "remove_staging",
    "run_build",
    "source_scan",
]

_DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

#: Raw input bytes per pack task by default: enough for several full segments, small enough
#: to balance and to retry cheaply.
TASK_RAW_BYTES = 2 * 1024**3

#: Seconds between the pack phase's progress lines (bytes move within long tasks).
PROGRESS_SECONDS = 2.0


#: File in ``OUT/_staging/<run_id>/`` naming the running build's dataset (see :func:`read_run_marker`).
RUN_MARKER = "run.json"

_run_clock = threading.Lock()
_last_run_us = 0


def new_run_id() -> str:
    """``<UTC time to the microsecond>Z-<8 hex>``: sortable by start time (strictly
    increasing within a process), unique across concurrent builds. Concurrent builds of one
    source resolve by this order (:mod:`iac_spark.catalog.commit`).

    >>> a, b = new_run_id(), new_run_id()
    >>> len(a), a < b
    (31, True)
    """
    global _last_run_us
    with _run_clock:
        _last_run_us = max(time.time_ns() // 1000, _last_run_us + 1)
        us = _last_run_us
    when = datetime.fromtimestamp(us // 1_000_000, timezone.utc)
    return f"{when:%Y%m%dT%H%M%S}{us % 1_000_000:06d}Z-{uuid.uuid4().hex[:8]}"


def _write_run_marker(staging: str, run_id: str, settings: BuildSettings) -> None:
    marker = {
        "run_id": run_id, "dataset": settings.dataset, "layout": settings.layout,
        "host": socket.gethostname(), "pid": os.getpid(),
    }  # fmt: skip
    tmp = os.path.join(staging, f".{RUN_MARKER}.tmp")
    with open(tmp, "w") as fh:
        json.dump(marker, fh)
    os.replace(tmp, os.path.join(staging, RUN_MARKER))


def read_run_marker(out: str, run_id: str) -> dict[str, object] | None:
    """What a build running into ``out`` as ``run_id`` wrote about itself at its start
    (``dataset``, ``layout``, ``host``, ``pid``), or None when its staging is gone (the
    build finished, or it died and was vacuumed)."""
    path = os.path.join(staging_dir(os.path.abspath(out), run_id), RUN_MARKER)
    try:
        with open(path) as fh:
            marker = json.load(fh)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


@dataclass(frozen=True)
class BuildKind:
    """A payload kind: how its members are scanned, planned and turned into records."""

    name: str  # "dicom" | "text"
    parser: Callable[..., MemberParser]  # called with the kind's scan options
    plan: PlanKind
    #: layout name → the record source of its pack tasks; the first layout is the default
    sources: dict[str, RecordSource]
    plan_columns: tuple[str, ...]  # scan columns the plan reads (plus status, error)
    pair_layouts: tuple[str, ...] = ()  # layouts built from two scans (source + compressed)
    #: layouts whose pack tasks are not the streaming shard writer (built whole by an adapter)
    task_fns: dict[str, TaskFn[PackTaskSpec, TaskResult]] = field(default_factory=dict)

    @property
    def layouts(self) -> tuple[str, ...]:
        return tuple(self.sources)


DICOM = BuildKind(
    name="dicom",
    parser=DicomParser,
    plan=DICOM_PLAN,
    sources={"dicom_p10": dicom_members, "dicom_patient": dicom_members},
    plan_columns=(*DICOM_PLAN.columns, "status", "error"),
    task_fns={"dicom_patient": run_patient_task},
)

TEXT = BuildKind(
    name="text",
    parser=TextParser,
    plan=TEXT_PLAN,
    sources={"clinical_text": text_patients, "clinical_text_pair": pair_patients},
    plan_columns=(*(c for c in TEXT_PLAN.columns if not c.startswith("_")), "status", "error"),
    pair_layouts=("clinical_text_pair",),
)


@dataclass
class SourceTally:
    """Fates of one source's members in one build: ``members == packed + duplicates + errors + skipped``."""

    members: int = 0
    packed: int = 0
    duplicates: int = 0
    errors: int = 0
    skipped: int = 0

    @property
    def balanced(self) -> bool:
        return self.members == self.packed + self.duplicates + self.errors + self.skipped


@dataclass
class BuildResult:
    """What a build published and everything it did not pack (nothing is dropped)."""

    run_id: str
    out: str
    dataset: str
    layout: str
    packs: list[PackInfo]
    issues: pa.Table  # ISSUE_SCHEMA: scan and pack errors
    duplicates: pa.Table
    conflicts: pa.Table
    sources: dict[str, SourceTally]
    raw_bytes: int
    seconds: float
    plan_kind: PlanKind = DICOM_PLAN
    staging: str = field(repr=False, default="")
    scan_files: list[str] = field(repr=False, default_factory=list)
    task_files: list[str] = field(repr=False, default_factory=list)  # the packed rows, per task
    carry: pa.Table | None = field(repr=False, default=None)  # patients rebuilt (text)

    @property
    def num_records(self) -> int:
        return sum(p.num_records for p in self.packs)

    @property
    def stored_bytes(self) -> int:
        return sum(p.data_bytes for p in self.packs)

    @property
    def num_conflicting(self) -> int:
        """Identities with more than one distinct copy."""
        return len(set(self.conflicts.column("identity").to_pylist()))

    @property
    def scanned(self) -> int:
        return sum(t.members for t in self.sources.values())

    def summary(self) -> str:
        """One line for logs and the CLI."""
        mb = 1024**2
        return (
            f"run {self.run_id}: {len(self.packs)} packs, {self.num_records} records "
            f"({self.raw_bytes / mb:.1f} MB raw → {self.stored_bytes / mb:.1f} MB stored), "
            f"{self.duplicates.num_rows} duplicates, {self.num_conflicting} conflicts, "
            f"{self.issues.num_rows} errors, {self.seconds:.1f} s"
        )

    def cleanup(self) -> None:
        """Remove this build's staging (scan files included)."""
        remove_staging(self.staging)


def _check_positive(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise OptionError(f"{name} must be a positive integer, got {value!r}")
    return value


def remove_staging(staging: str) -> None:
    """Remove ``OUT/_staging/<run_id>`` (and ``OUT/_staging`` if no other build uses it)."""
    if not staging:
        return
    remove_tree(staging)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(staging))


def _tally(
    scans: Sequence[ScanTaskResult], plan: BuildPlan, packed: Counter[str], issues: pa.Table
) -> dict[str, SourceTally]:
    tally: dict[str, SourceTally] = {}
    for r in scans:
        for path, c in r.counts.items():
            t = tally.setdefault(path, SourceTally())
            t.members += c.members
            t.skipped += c.skipped
    for path, n in Counter(plan.duplicates.column("source_path").to_pylist()).items():
        tally.setdefault(path, SourceTally()).duplicates += n
    for path, n in Counter(issues.column("source_path").to_pylist()).items():
        tally.setdefault(path, SourceTally()).errors += n
    for path, n in packed.items():
        tally.setdefault(path, SourceTally()).packed += n
    return tally


def _issues(plan: BuildPlan, results: Sequence[TaskResult]) -> pa.Table:
    pack = [i for r in results for i in r.issues]
    pack_table = pa.table(
        {
            "source_path": [i.source_path for i in pack],
            "source_member": [i.source_member for i in pack],
            "stage": ["pack"] * len(pack),
            "error": [i.error for i in pack],
        },
        schema=ISSUE_SCHEMA,
    )
    return pa.concat_tables([plan.scan_errors, plan.other_issues, pack_table])


@dataclass(frozen=True)
class BuildSettings:
    """The options of one build, validated once (see :func:`run_build` for their meaning)."""

    dataset: str = "default"
    layout: str = "dicom_p10"
    codec: RecordCodec = field(default_factory=lambda: RecordCodec.create("zstd", level=3))
    shard_target_bytes: int = DEFAULT_SHARD_TARGET_BYTES
    pack_target_bytes: int = DEFAULT_PACK_TARGET_BYTES
    num_tasks: int | None = None
    max_partition_bytes: int = 128 * 1024**2
    keep_staging: bool = False
    jxl_effort: int | None = None  # dicom_patient: libjxl effort 1-10 (default 2)
    fallback: str | None = None  # dicom_patient: "dicom_p10" packs what the layout cannot hold
    #: bounds on hostile input for the scan (member size, nesting, members per archive)
    limits: InputLimits = field(default_factory=InputLimits)

    @classmethod
    def make(cls, kind: BuildKind, **options: object) -> BuildSettings:
        """Settings for ``kind`` from keyword options; :class:`OptionError` names a bad one."""
        unknown = sorted(set(options) - set(cls.__dataclass_fields__))
        if unknown:
            raise OptionError(f"unknown build option(s) {unknown}")
        given = {k: v for k, v in options.items() if v is not None}
        given.setdefault("layout", kind.layouts[0])
        settings = cls(**given)  # type: ignore[arg-type]
        if not _DATASET_RE.match(settings.dataset):
            raise OptionError(
                f"dataset must match {_DATASET_RE.pattern} (it becomes a folder name), "
                f"got {settings.dataset!r}"
            )
        if settings.layout not in kind.layouts:
            raise OptionError(
                f"layout {settings.layout!r} is not a {kind.name} layout; choose from {kind.layouts}"
            )
        for name in ("shard_target_bytes", "pack_target_bytes", "max_partition_bytes"):
            _check_positive(name, getattr(settings, name))
        if settings.num_tasks is not None:
            _check_positive("num_tasks", settings.num_tasks)
        if settings.jxl_effort is not None and not (
            isinstance(settings.jxl_effort, int) and 1 <= settings.jxl_effort <= 10
        ):
            raise OptionError(
                f"jxl_effort must be an integer from 1 to 10, got {settings.jxl_effort!r}"
            )
        if settings.fallback not in FALLBACKS:
            raise OptionError(f"fallback must be one of {FALLBACKS}, got {settings.fallback!r}")
        if (settings.jxl_effort or settings.fallback) and settings.layout != "dicom_patient":
            raise OptionError("jxl_effort and fallback go with layout='dicom_patient'")
        if not isinstance(settings.limits, InputLimits):
            raise OptionError(
                f"limits must be an iac_spark.inputs.limits.InputLimits, got {settings.limits!r}"
            )
        return settings


#: The scan phase of a build: given the scan folder, run the scan and return its results.
ScanPhase = Callable[[str], list[ScanTaskResult]]


def source_scan(
    sources: Sequence[Source],
    executor: Executor,
    kind: BuildKind,
    settings: BuildSettings,
    scan_options: dict[str, object] | None = None,
    progress: Progress | None = None,
    *,
    compressed: Sequence[Source] = (),
) -> ScanPhase:
    """The scan phase over ``sources`` (and, for pairs, ``compressed`` with role
    ``"compressed"``): scan tasks on ``executor``, balanced by member weight."""

    def scan(scan_dir: str) -> list[ScanTaskResult]:
        parser = functools.partial(kind.parser, **(scan_options or {}))
        mpb = settings.max_partition_bytes
        specs = []
        for role, group in (("source", sources), ("compressed", compressed)):
            if not group:
                continue
            on_disk = sum(s.file.size for s in group)
            parts = plan_partitions(
                group,
                max_partition_bytes=mpb,
                num_partitions=max(executor.parallelism(), math.ceil(on_disk / mpb)),
            )
            specs += [
                ScanTaskSpec(tuple(p), parser, scan_dir, role, settings.limits) for p in parts
            ]
        planned = sum(s.file.size for s in (*sources, *compressed))
        return executor.run(
            run_scan_task, specs, phase="scan", planned_bytes=planned, progress=progress
        )

    return scan


def run_build(
    sources: Sequence[Source],
    out: str,
    *,
    executor: Executor,
    kind: BuildKind = DICOM,
    scan_options: dict[str, object] | None = None,
    known: pa.Table | None = None,
    carry: pa.Table | None = None,
    compressed: Sequence[Source] = (),
    run_id: str | None = None,
    progress: Progress | None = None,
    **options: object,
) -> BuildResult:
    """Build packs of ``sources`` into ``OUT/packs/<dataset>/`` on ``executor``.

    ``options`` are :class:`BuildSettings` fields: ``dataset``, ``layout`` (default: the kind's
    first), ``codec``, ``shard_target_bytes``, ``pack_target_bytes``, ``num_tasks`` (default: one
    per executor core, or one per 2 GiB of raw input), ``max_partition_bytes`` (scan),
    ``keep_staging`` (keep the scan files for the catalog commit until
    :meth:`BuildResult.cleanup`), ``limits`` (an :class:`~iac_spark.inputs.limits.InputLimits`
    for the scan: member size, nesting depth, members per archive). ``scan_options`` go to the kind's parser (DICOM: ``meta``).
    ``known`` is a two-column table (identity, raw CRC-32) of the items already live in the
    catalog, so reruns report them as duplicates. Text only: ``compressed`` are the sources of
    the teacher-compressed notes of a ``clinical_text_pair`` build; ``carry``
    (:data:`~iac_spark.packing.text.CARRY_SCHEMA`) names the patients already packed whose
    record this build replaces. Raises :class:`BuildError` on failure, after removing
    everything this run published.
    """
    settings = BuildSettings.make(kind, **options)
    if settings.layout in kind.pair_layouts and not compressed:
        raise OptionError(f"layout {settings.layout!r} needs the compressed notes' sources")
    if compressed and settings.layout not in kind.pair_layouts:
        raise OptionError(f"compressed sources only go with {kind.pair_layouts or 'pair layouts'}")
    scan = source_scan(
        sources, executor, kind, settings, scan_options, progress, compressed=compressed
    )
    return build_from_scan(
        scan, out, executor=executor, kind=kind, settings=settings, known=known, carry=carry,
        run_id=run_id, progress=progress,
    )  # fmt: skip


def build_from_scan(
    scan: ScanPhase,
    out: str,
    *,
    executor: Executor,
    kind: BuildKind,
    settings: BuildSettings,
    known: pa.Table | None = None,
    carry: pa.Table | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Run a build whose scan phase is ``scan`` (the core of :func:`run_build`)."""
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    out = normalize_path(out)
    run_id = run_id or new_run_id()
    staging = staging_dir(out, run_id)
    published: list[str] = []
    try:
        executor.check_visible(out)
        os.makedirs(staging, exist_ok=True)
        _write_run_marker(staging, run_id, settings)
        # 1. scan
        scans = scan(os.path.join(staging, "scan"))
        scan_files = [r.path for r in scans]
        say(f"scanned {sum(r.rows for r in scans)} members")
        # 2. plan
        tasks_dir = os.path.join(staging, "tasks")
        if scan_files:
            # the plan owns the rows: handed over from a list, so no reference stays here and
            # each planning step's copy replaces the one before (driver memory per member)
            held = [read_scan_columns(scan_files, kind.plan_columns)]
            raw_total = int(pc.sum(held[0].column("size")).as_py() or 0)
            n = settings.num_tasks or max(
                executor.parallelism(), math.ceil(raw_total / TASK_RAW_BYTES)
            )
            if settings.layout in kind.pair_layouts:
                roles = [r.role for r in scans]
                plan = plan_pairs(held.pop(), roles, num_tasks=n, tasks_dir=tasks_dir, known=known)
            else:
                plan = plan_build(
                    held.pop(), kind.plan, num_tasks=n, tasks_dir=tasks_dir, known=known
                )
            write_carry(plan, carry)
        else:
            plan = BuildPlan(
                [], ISSUE_SCHEMA.empty_table(), DUPLICATE_SCHEMA.empty_table(),
                CONFLICT_SCHEMA.empty_table(),
            )  # fmt: skip
        say(
            f"packing {plan.num_records} records ({plan.raw_bytes / 1024**2:.1f} MB) "
            f"in {len(plan.tasks)} tasks"
        )
        # 3. pack
        pack_specs = [
            PackTaskSpec(
                t,
                staging,
                settings.layout,
                settings.codec,
                kind.sources[settings.layout],
                settings.shard_target_bytes,
                scan_files=tuple(scan_files),
                options=(("jxl_effort", settings.jxl_effort), ("fallback", settings.fallback)),
            )
            for t in plan.tasks
        ]
        task_fn = kind.task_fns.get(settings.layout, run_pack_task)
        if progress is not None and pack_specs:
            # the tasks report their bytes as they go; the watcher's lines replace the
            # executor's, which move only when a task ends
            meters = os.path.join(staging, "progress")
            planned = [t.raw_bytes for t in plan.tasks]
            with TaskWatcher(meters, "pack", planned, progress, interval=PROGRESS_SECONDS):
                results = executor.run(
                    Metered(task_fn, meters), pack_specs, phase="pack",
                    planned_bytes=plan.raw_bytes,
                )  # fmt: skip
        else:
            results = executor.run(task_fn, pack_specs, phase="pack", planned_bytes=plan.raw_bytes)
        if [r.task_id for r in results] != list(range(len(plan.tasks))):
            raise BuildError(
                f"expected one result per task, got tasks {[r.task_id for r in results]}"
            )
        # 4. merge
        packs = merge_segments(
            [s for r in results for s in r.segments], out, settings.dataset, run_id,
            layout=LAYOUTS[settings.layout], pack_target_bytes=settings.pack_target_bytes,
            published=published,
        )  # fmt: skip
        issues = _issues(plan, results)
        packed: Counter[str] = Counter()
        for r in results:
            packed.update(r.packed)
        tally = _tally(scans, plan, packed, issues)
        broken = {p: t for p, t in tally.items() if not t.balanced}
        if broken:
            raise BuildError(
                f"member accounting does not balance for {len(broken)} source(s): {broken}"
            )
    except Exception as exc:
        for path in published:
            with contextlib.suppress(OSError):
                os.remove(path)
        remove_staging(staging)
        if isinstance(exc, (BuildError, OptionError)):
            raise
        raise BuildError(
            f"build {run_id} failed and published nothing: {type(exc).__name__}: {exc}"
        ) from exc
    result = BuildResult(
        run_id=run_id, out=out, dataset=settings.dataset, layout=settings.layout, packs=packs,
        issues=issues, duplicates=plan.duplicates, conflicts=plan.conflicts, sources=tally,
        raw_bytes=sum(r.raw_bytes for r in results), seconds=time.perf_counter() - started,
        plan_kind=kind.plan, staging=staging, scan_files=scan_files,
        task_files=[t.path for t in plan.tasks], carry=carry,
    )  # fmt: skip
    if not settings.keep_staging:
        result.cleanup()
    say(result.summary())
    return result
