"""``build``: discover → plan (incremental) → scan & pack only what is new or changed → commit.

The high-level entry point of the CLI and the jobs. A rerun over the same inputs finds
every source unchanged and returns at once with zero packs, without starting any Spark
job. A changed zip (same path, different fingerprint) is re-ingested completely and its
older records are retired by the commit; instances already catalogued from other
sources become ``duplicate`` error rows instead of being packed again.

Example:
    >>> import iac_spark, iac_spark.catalog as cat
    >>> spark = iac_spark.local_session()                                   # doctest: +SKIP
    >>> result = cat.build(spark, ["demo_data"], "demo_out", dataset="demo")  # doctest: +SKIP
    >>> print(result.summary_table())                                       # doctest: +SKIP
    catalog build   /work/demo_out (dataset demo)
    run             20261122T210000Z-3f2a9c1d
    sources         4 new, 0 changed, 0 unchanged
    packs           1 new
    records         240
    ...
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, cast

from ..errors import OptionError
from ..inputs.discover import discover, normalize_path
from ..inputs.limits import InputLimits
from ..inputs.survey import Source, survey
from ..packing.build import DICOM, TEXT, BuildKind, BuildResult, new_run_id, run_build
from ..packing.executor import Executor, LocalExecutor
from ..text.rows import DEFAULT_GLOB
from .commit import CommitResult, commit_build, record_failed_run
from .incremental import SourcePlan, known_items, plan_sources, text_carry
from .schema import TableName
from .spark_delta import catalog_store
from .store import AsOf, CatalogStore

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["BUILD_KINDS", "CatalogBuildResult", "build"]

#: Payload kinds a catalog build ingests.
BUILD_KINDS: dict[str, BuildKind] = {"dicom": DICOM, "text": TEXT}


@dataclass(frozen=True)
class CatalogBuildResult:
    """What one :func:`build` did; ``run_id`` is None when there was nothing to do."""

    out: str
    dataset: str
    run_id: str | None
    new_packs: int
    records: int
    duplicates: int
    conflicts: int
    errors: int
    skipped: int
    new_sources: int
    changed_sources: int
    unchanged_sources: int
    retired_records: int
    catalog_version: int | None  # ``runs`` table version after this build (None: no catalog yet)
    seconds: float
    build_result: BuildResult | None = field(default=None, repr=False)
    plan: SourcePlan | None = field(default=None, repr=False)
    commit: CommitResult | None = field(default=None, repr=False)

    @property
    def nothing_to_do(self) -> bool:
        """True when every source was unchanged (no Spark job ran)."""
        return self.run_id is None

    def summary(self) -> str:
        """One line for logs."""
        if self.nothing_to_do:
            return f"{self.out}: nothing to do ({self.unchanged_sources} sources unchanged), catalog version {self.catalog_version}"
        return (
            f"run {self.run_id}: {self.new_packs} packs, {self.records} records, {self.duplicates} duplicates, "
            f"{self.conflicts} conflicts, {self.errors} errors, {self.skipped} skipped; sources "
            f"{self.new_sources} new / {self.changed_sources} changed / {self.unchanged_sources} unchanged; "
            f"catalog version {self.catalog_version}"
        )

    def summary_table(self) -> str:
        """A two-column table for the CLI.

        >>> r = CatalogBuildResult("/o", "ds", None, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 2, 0.01)
        >>> print(r.summary_table())
        catalog build   /o (dataset ds)
        run             - (nothing to do)
        sources         0 new, 0 changed, 3 unchanged
        packs           0 new
        records         0
        duplicates      0
        conflicts       0
        errors          0
        skipped         0
        retired         0
        catalog         version 2
        time            0.0 s
        """
        rows = [
            ("catalog build", f"{self.out} (dataset {self.dataset})"),
            ("run", self.run_id or "- (nothing to do)"),
            (
                "sources",
                f"{self.new_sources} new, {self.changed_sources} changed, {self.unchanged_sources} unchanged",
            ),
            ("packs", f"{self.new_packs} new"),
            ("records", str(self.records)),
            ("duplicates", str(self.duplicates)),
            ("conflicts", str(self.conflicts)),
            ("errors", str(self.errors)),
            ("skipped", str(self.skipped)),
            ("retired", str(self.retired_records)),
            (
                "catalog",
                f"version {self.catalog_version}" if self.catalog_version is not None else "none",
            ),
            ("time", f"{self.seconds:.1f} s"),
        ]
        return "\n".join(f"{k:<15} {v}" for k, v in rows)


class _AsPlanned:
    """``store``, with its latest ``runs`` version held at ``version``: what the build reads
    after its plan (the catalogued items, the text records to rebuild) is the catalog the plan
    saw, even while other builds commit. (Otherwise a source planned as new could find its own
    items catalogued by a racing build, report them as duplicates instead of packing them, and
    lose them when the racing copy is retired.)"""

    def __init__(self, store: CatalogStore, version: int) -> None:
        self._store, self._version = store, version

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def version(self, name: TableName, as_of: AsOf = None) -> int:
        if name == "runs" and as_of is None:
            return self._version
        return self._store.version(name, as_of)


def _executor(
    executor: Literal["spark", "local"] | Executor,
    spark: SparkSession | Callable[[], SparkSession] | None,
) -> Executor:
    if not isinstance(executor, str):
        return executor
    if executor == "local":
        return LocalExecutor()
    if executor != "spark":
        raise OptionError(f"executor must be 'spark' or 'local', got {executor!r}")
    if spark is None:
        raise OptionError("executor='spark' needs a SparkSession (or a factory of one)")
    from ..session import register
    from ..spark_executor import SparkExecutor

    return SparkExecutor(register(spark() if callable(spark) else spark))


def build(
    spark: SparkSession | Callable[[], SparkSession] | None,
    sources: Sequence[str],
    out: str,
    *,
    dataset: str = "default",
    kind: Literal["dicom", "text"] = "dicom",
    executor: Literal["spark", "local"] | Executor = "spark",
    meta: bool = True,
    compressed: Sequence[str] = (),
    text_options: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    retry_failed: bool = False,
    glob_filter: str | None = None,
    engine: Literal["delta-rs", "spark"] = "delta-rs",
    catalog_name: str | None = None,
    run_id: str | None = None,
    **build_options: Any,
) -> CatalogBuildResult:
    """Ingest ``sources`` (directories, globs, zips, bare files) into ``out`` incrementally.

    Discovers the files and surveys them once (fingerprints and member weights from one
    central-directory read per zip), plans them against the catalog (:func:`plan_sources`),
    returns immediately with zero packs when nothing is new or changed (no Spark job, no JVM),
    otherwise runs the build core (:func:`iac_spark.packing.run_build`) on ``executor`` —
    ``"spark"`` (tasks on ``spark``), ``"local"`` (in this process, no JVM) or an
    :class:`~iac_spark.packing.Executor` — and commits the run. ``meta=False`` leaves the DICOM
    JSON out of ``records`` (and the scan never encodes it). ``kind="text"`` ingests clinical
    notes (``*.txt`` in zips, folders, bare files) into ``clinical_text`` packs, or with
    ``layout="clinical_text_pair"`` paired with the notes under ``compressed``; patients that
    get new notes are rebuilt with their earlier ones. ``text_options`` go to the note parser
    (``path_pattern``, ``encoding``, ``max_doc_bytes``, ``normalize``). ``build_options`` are
    :class:`~iac_spark.packing.BuildSettings` fields (``layout``, ``pack_target_bytes``,
    ``shard_target_bytes``, ``codec``, ``num_tasks``, ...). A failed build or commit is recorded
    in ``runs`` with ``status='failed'`` (best effort) and re-raised. ``spark`` may be a session,
    a zero-argument factory (called only when there is work), or None with
    ``executor="local"`` and the delta-rs engine.
    """
    t0 = time.perf_counter()
    started_at = datetime.now(timezone.utc)
    say = progress or (lambda _msg: None)
    out = normalize_path(out)
    if callable(spark) and (engine != "delta-rs" or catalog_name is not None):
        spark = spark()  # the Spark Delta store needs the session up front
    store = catalog_store(
        out, spark=None if callable(spark) else spark, engine=engine, catalog_name=catalog_name
    )
    build_kind = BUILD_KINDS[kind]
    text = build_kind is TEXT
    glob = glob_filter or (DEFAULT_GLOB if text else None)

    limits = build_options.get("limits") or InputLimits()

    def find(paths: Sequence[str]) -> list[Source]:
        files = discover(
            list(paths), glob_filter=glob, filter_zips=not text,
            follow_symlinks=limits.follow_symlinks,
        )  # fmt: skip
        return survey(files, limits=limits)

    surveyed = find(sources)
    surveyed_compressed = find(compressed) if compressed else []
    plan = plan_sources(
        out,
        [*surveyed, *surveyed_compressed],
        dataset=dataset,
        retry_failed=retry_failed,
        store=store,
    )
    say(
        f"{len(surveyed)} sources: {len(plan.new)} new, {len(plan.changed)} changed, "
        f"{len(plan.unchanged)} unchanged"
    )
    if not plan.to_ingest:
        return CatalogBuildResult(
            out=out, dataset=dataset, run_id=None, new_packs=0, records=0, duplicates=0, conflicts=0,
            errors=0, skipped=0, new_sources=0, changed_sources=0, unchanged_sources=len(plan.unchanged),
            retired_records=0, catalog_version=plan.catalog_version, seconds=time.perf_counter() - t0, plan=plan,
        )  # fmt: skip
    planned = cast(CatalogStore, _AsPlanned(store, plan.catalog_version or 0))
    comp_paths = {s.path for s in surveyed_compressed}
    ingest = [s for s in plan.to_ingest if s.path not in comp_paths]
    ingest_compressed = [s for s in plan.to_ingest if s.path in comp_paths]
    carry = None
    if text:
        known = known_items(
            out, table="documents", identity="doc_id", dataset=dataset,
            exclude_paths=plan.retire_paths, store=planned,
        )  # fmt: skip
        layout = build_options.get("layout") or build_kind.layouts[0]
        carry = text_carry(
            out, dataset=dataset, layout=layout, exclude_paths=plan.retire_paths, store=planned
        )
        scan_options: dict[str, object] = dict(text_options or {})
        if glob_filter:
            scan_options["glob_filter"] = glob_filter
    else:
        known = known_items(out, dataset=dataset, exclude_paths=plan.retire_paths, store=planned)
        scan_options = {"meta": meta, "promoted": True}
    run_id = run_id or new_run_id()
    result: BuildResult | None = None
    try:
        result = run_build(
            ingest, out, executor=_executor(executor, spark), kind=build_kind,
            scan_options=scan_options, known=known, carry=carry, compressed=ingest_compressed,
            run_id=run_id, progress=progress, dataset=dataset, keep_staging=True, **build_options,
        )  # fmt: skip
        commit = commit_build(
            out, result, plan.to_ingest, retire_paths=plan.retire_paths, started_at=started_at,
            store=store, planned_version=-1 if plan.catalog_version is None else plan.catalog_version,
        )  # fmt: skip
    except BaseException:
        with contextlib.suppress(Exception):  # best effort: the original error matters more
            record_failed_run(out, run_id, dataset, started_at=started_at, store=store)
        raise
    finally:
        if result is not None:
            result.cleanup()
    say(f"committed run {run_id} as catalog version {commit.version}")
    return CatalogBuildResult(
        out=out, dataset=dataset, run_id=run_id, new_packs=commit.num_packs, records=commit.num_records,
        duplicates=commit.num_duplicates, conflicts=commit.num_conflicts, errors=commit.num_errors,
        skipped=commit.num_skipped, new_sources=len(plan.new), changed_sources=len(plan.changed),
        unchanged_sources=len(plan.unchanged), retired_records=commit.retired_records,
        catalog_version=commit.version, seconds=time.perf_counter() - t0, build_result=result,
        plan=plan, commit=commit,
    )  # fmt: skip
