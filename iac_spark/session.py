"""Local SparkSession for the CLI, demo and tests, and data source registration.

``local_session(delta=True)`` starts the session with Delta Lake from the jars that
``make delta-jars`` caches under ``.cache/delta-jars/<version>/`` (or the folder named by
``IAC_SPARK_DELTA_JARS``): the jars must be on the JVM's classpath when it starts, so that
has to be the process's first session.

Example:
    >>> import iac_spark
    >>> spark = iac_spark.local_session()                       # doctest: +SKIP
    >>> spark.read.format("zipdcm").load("demo_data").count()   # doctest: +SKIP
    240
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DeltaJarsNotFoundError, JavaNotFoundError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "DELTA_CATALOG",
    "DELTA_EXTENSION",
    "DELTA_JARS_ENV",
    "check_java",
    "delta_jars",
    "local_session",
    "register",
]

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
DELTA_JARS_ENV = "IAC_SPARK_DELTA_JARS"
"""A folder holding the Delta Lake jars; overrides the ``make delta-jars`` cache."""
_DELTA_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "delta-jars"
_COMPLETE = ".complete"  # written by `make delta-jars` once a folder holds every jar


def check_java() -> str:
    """Path of the ``java`` that Spark will start, or :class:`JavaNotFoundError` in one sentence."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = os.path.join(home, "bin", "java")
        if os.path.exists(candidate):
            return candidate
    found = shutil.which("java")
    if not found:
        raise JavaNotFoundError(
            "Spark needs a Java runtime (17 or 21) and none was found: install one "
            "(e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME."
        )
    return found


def _delta_spark_jar() -> str:
    """Glob of the delta-spark jar built for the installed pyspark (Delta 4.x names the line)."""
    spark_line = ".".join(package_version("pyspark").split(".")[:2])
    return f"delta-spark_{spark_line}_2.13-*.jar"


def _release(folder: Path, pattern: str) -> tuple[int, ...]:
    """Delta release of the delta-spark jar in ``folder`` (``4.4.0`` → ``(4, 4, 0)``)."""
    prefix = pattern.removesuffix("*.jar")
    name = max(p.name for p in folder.glob(pattern))
    return tuple(int(n) for n in re.findall(r"\d+", name[len(prefix) :]))


def delta_jars() -> list[str]:
    """Absolute paths of the Delta Lake jars for :func:`local_session` ``(delta=True)``.

    Every ``*.jar`` of the folder ``$IAC_SPARK_DELTA_JARS`` if set, else of the newest
    complete ``make delta-jars`` cache ``<checkout>/.cache/delta-jars/<version>/``; the folder
    must hold the ``delta-spark_<spark major.minor>_2.13`` jar matching the installed pyspark.
    Reads only the file system (no JVM). Raises :class:`DeltaJarsNotFoundError` otherwise.

    Example:
        >>> [os.path.basename(j) for j in delta_jars()][:4]     # doctest: +SKIP
        ['delta-kernel-api-4.4.0.jar', 'delta-kernel-defaults-4.4.0.jar', 'delta-kernel-unitycatalog-4.4.0.jar', 'delta-spark_4.2_2.13-4.4.0.jar']
    """
    pattern = _delta_spark_jar()
    override = os.environ.get(DELTA_JARS_ENV)
    if override:
        folder = Path(override)
        if not any(folder.glob(pattern)):
            raise DeltaJarsNotFoundError(
                f"{DELTA_JARS_ENV}={override}: no {pattern} in that folder; run `make delta-jars` "
                f"(with {DELTA_JARS_ENV} set it fetches into that folder)"
            )
    else:
        caches = (
            [
                d
                for d in _DELTA_CACHE.iterdir()
                if (d / _COMPLETE).is_file() and any(d.glob(pattern))
            ]
            if _DELTA_CACHE.is_dir()
            else []
        )
        if not caches:
            raise DeltaJarsNotFoundError(
                f"no Delta Lake jars ({pattern}) under {_DELTA_CACHE}: run `make delta-jars` "
                f"(needs Maven and Maven Central), or set {DELTA_JARS_ENV} to a folder of them"
            )
        folder = max(caches, key=lambda d: _release(d, pattern))
    return sorted(str(p.resolve()) for p in folder.glob("*.jar"))


def _require_delta(spark: SparkSession) -> SparkSession:
    from .catalog.spark_delta import has_delta

    if not has_delta(spark):
        raise DeltaJarsNotFoundError(
            "a SparkSession without Delta Lake already runs in this process and its JVM cannot "
            "load jars any more: call local_session(delta=True) before any other session, "
            "or in a fresh process"
        )
    return spark


def _joined(*values: object) -> str:
    """Comma-joined list settings (``spark.jars``, ``spark.sql.extensions``), empties dropped."""
    return ",".join(str(v) for v in values if v)


def register(spark: SparkSession) -> SparkSession:
    """Register the ``zipdcm``, ``ziptext`` and ``iac`` data sources on ``spark`` (idempotent)."""
    from .sources import ZipDcmDataSource, ZipTextDataSource
    from .sources.iac import IacDataSource

    for source in (ZipDcmDataSource, ZipTextDataSource, IacDataSource):
        spark.dataSource.register(source)
    return spark


def local_session(
    master: str = "local[*]",
    *,
    delta: bool = False,
    app_name: str = "iac_spark",
    shuffle_partitions: int = 8,
    conf: dict[str, Any] | None = None,
) -> SparkSession:
    """A local SparkSession (UI off, quiet logs) with our sources registered.

    ``delta=True`` adds Delta Lake: the :func:`delta_jars` as ``spark.jars``, its SQL
    extension and ``DeltaCatalog`` as ``spark_catalog`` (``conf`` values for ``spark.jars`` or
    ``spark.sql.extensions`` are added to, not replaced). Reuses an active session if there
    is one. Raises :class:`JavaNotFoundError` when Java is missing, instead of PySpark's long
    stack trace, and :class:`DeltaJarsNotFoundError` when ``delta=True`` finds no jars or
    the process already runs a session without Delta.

    Example:
        >>> spark = local_session("local[2]", delta=True)                     # doctest: +SKIP
        >>> spark.read.format("delta").load("demo_out/_catalog/runs").count()  # doctest: +SKIP
        1
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return register(_require_delta(active) if delta else active)
    check_java()
    settings = {str(k): str(v) for k, v in (conf or {}).items()}
    if delta:
        settings["spark.jars"] = _joined(*delta_jars(), settings.get("spark.jars"))
        settings["spark.sql.extensions"] = _joined(
            DELTA_EXTENSION, settings.get("spark.sql.extensions")
        )
        settings.setdefault("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
        # Delta replays a table's log in 50 tasks by default, sized for clusters: locally every
        # small commit would pay for them (the catalog's commits took twice as long)
        settings.setdefault("spark.databricks.delta.snapshotPartitions", str(shuffle_partitions))
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # skip slow hostname lookups
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.driver.memory", os.environ.get("IAC_SPARK_DRIVER_MEMORY", "4g"))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.python.worker.reuse", "true")
    )
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("IAC_SPARK_LOG_LEVEL", "ERROR"))
    # getOrCreate reuses a SparkContext of this process, whose JVM ignores new spark.jars
    return register(_require_delta(spark) if delta else spark)
