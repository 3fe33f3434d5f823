"""Local SparkSession for the CLI, demo and tests, and data source registration.

``local_session(delta=True)`` starts the session with Delta Lake from the jars that
``make delta-jars`` caches under ``.cache/delta-jars/<version>/`` (or the folder named by
``IAC_SPARK_DELTA_JARS``): the jars must be on the JVM's classpath when it starts, so that
has to be the process's first session. ``local_session("local-cluster[2,1,1024]")`` starts
Spark's multi-JVM test cluster (two executor JVMs, each with its own Python workers) from the
pyspark install. ``remote_session()`` is the Spark Connect counterpart (what Databricks
serverless and Databricks Connect use): ``remote_session("local[2]")`` starts pyspark's
built-in local Connect server in this process, ``remote_session("sc://host:15002")`` connects
to a running one.

Example:
    >>> import iac_spark
    >>> spark = iac_spark.local_session()                       # doctest: +SKIP
    >>> spark.read.format("zipdcm").load("demo_data").count()   # doctest: +SKIP
    240
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import warnings
import weakref
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
    "is_connect",
    "local_session",
    "register",
    "remote_session",
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


def is_connect(spark: object) -> bool:
    """True when ``spark`` is a Spark Connect session (no SparkContext, no JVM in this process).

    Looks at the class only, so it needs neither a server round trip nor ``pyspark[connect]``.

    >>> is_connect(object())
    False
    """
    return type(spark).__module__.startswith("pyspark.sql.connect.")


# sessions our sources are registered on: registering again replaces them, which a Connect
# server logs as a warning on every build
_REGISTERED: weakref.WeakSet[Any] = weakref.WeakSet()


def register(spark: SparkSession) -> SparkSession:
    """Register the ``zipdcm``, ``ziptext`` and ``iac`` data sources on ``spark`` (idempotent).

    Works on classic and Spark Connect sessions alike: Connect ships the (cloudpickled) source
    classes to the server, whose Python workers import ``iac_spark`` by name, so the package
    must be installed where the server's and the executors' Python workers run.
    """
    from .sources import ZipDcmDataSource, ZipTextDataSource
    from .sources.iac import IacDataSource

    try:
        if spark in _REGISTERED:
            return spark
    except TypeError:  # not weak-referenceable: register every time
        pass
    for source in (ZipDcmDataSource, ZipTextDataSource, IacDataSource):
        spark.dataSource.register(source)
    with contextlib.suppress(TypeError):
        _REGISTERED.add(spark)
    return spark


def _settings(delta: bool, shuffle_partitions: int, conf: dict[str, Any] | None) -> dict[str, str]:
    """Spark settings of a session we start (UI off, Arrow on; Delta Lake with ``delta``)."""
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.driver.memory": os.environ.get("IAC_SPARK_DRIVER_MEMORY", "4g"),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.python.worker.reuse": "true",
    }
    given = {str(k): str(v) for k, v in (conf or {}).items()}
    settings.update(given)
    if delta:
        settings["spark.jars"] = _joined(*delta_jars(), given.get("spark.jars"))
        settings["spark.sql.extensions"] = _joined(
            DELTA_EXTENSION, given.get("spark.sql.extensions")
        )
        settings.setdefault("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
        # Delta replays a table's log in 50 tasks by default, sized for clusters: locally every
        # small commit would pay for them (the catalog's commits took twice as long)
        settings.setdefault("spark.databricks.delta.snapshotPartitions", str(shuffle_partitions))
    return settings


def _local_environment(master: str) -> None:
    """Environment of a JVM this process starts: Python workers run this interpreter."""
    check_java()
    if master.startswith("local"):  # local[N], local-cluster[...]
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # skip slow hostname lookups
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def _quiet_logs() -> None:
    """Log level of the SparkContext in this process (a classic session, or a local Connect
    server's): ``IAC_SPARK_LOG_LEVEL``, default ERROR."""
    from pyspark import SparkContext

    SparkContext.getOrCreate().setLogLevel(os.environ.get("IAC_SPARK_LOG_LEVEL", "ERROR"))


def local_session(
    master: str = "local[*]",
    *,
    delta: bool = False,
    app_name: str = "iac_spark",
    shuffle_partitions: int = 8,
    conf: dict[str, Any] | None = None,
) -> SparkSession:
    """A local SparkSession (UI off, quiet logs) with our sources registered.

    ``master`` is ``local[N]`` (one JVM; tasks in its threads) or
    ``local-cluster[W,C,M]``: Spark's multi-JVM test cluster, W executor JVMs of C cores and
    M MB each, started from the pyspark install (``SPARK_HOME`` is pyspark's folder, whose
    ``bin/spark-class`` launches them), each with its own Python workers and working directory
    (under ``$SPARK_HOME/work``, or a temporary folder when ``SPARK_TESTING`` is set); any
    other master URL works too. ``delta=True`` adds Delta Lake: the :func:`delta_jars` as
    ``spark.jars``, its SQL extension and ``DeltaCatalog`` as ``spark_catalog`` (``conf``
    values for ``spark.jars`` or ``spark.sql.extensions`` are added to, not replaced). Reuses
    an active session if there is one (also a Spark Connect one, e.g. with ``SPARK_REMOTE``
    set). Raises :class:`JavaNotFoundError` when Java is missing, instead of PySpark's long
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
    _local_environment(master)
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in _settings(delta, shuffle_partitions, conf).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if not is_connect(spark):  # SPARK_REMOTE / spark.api.mode=connect give a Connect session
        _quiet_logs()
    # getOrCreate reuses a SparkContext of this process, whose JVM ignores new spark.jars
    return register(_require_delta(spark) if delta else spark)


def remote_session(
    url: str = "local[2]",
    *,
    delta: bool = False,
    app_name: str = "iac_spark",
    shuffle_partitions: int = 8,
    conf: dict[str, Any] | None = None,
) -> SparkSession:
    """A Spark Connect session with our sources registered (``pyspark[connect]`` needed).

    ``url`` ``local[N]``: pyspark starts its built-in Connect server inside this process
    (``SparkSession.builder.remote("local[N]")``) with the settings of :func:`local_session`
    (``delta``, ``shuffle_partitions``, ``conf``) and quiet logs; the process must not run a
    classic session already (pyspark refuses), and the server listens on port 15002 (on a
    free port when ``SPARK_TESTING`` is set). ``url`` ``sc://host:port/;token=...``: a running
    Connect server; ``conf`` then holds runtime (SQL) settings only and ``delta`` is the
    server's business. The client has no SparkContext: relative paths given to
    ``spark.read.format("zipdcm").load(...)`` resolve on the server, so pass absolute ones
    (the library's own entry points, e.g. :func:`iac_spark.catalog.build`, resolve theirs
    in this process).

    Example:
        >>> spark = remote_session("local[2]")                                  # doctest: +SKIP
        >>> spark.read.format("zipdcm").load("/data/zips").count()              # doctest: +SKIP
        240
    """
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.remote(url).appName(app_name)
    local = url.startswith("local")
    if local:
        _local_environment(url)
        settings = _settings(delta, shuffle_partitions, conf)
    else:
        settings = {str(k): str(v) for k, v in (conf or {}).items()}
    for key, value in settings.items():
        builder = builder.config(key, value)
    with warnings.catch_warnings():
        # pyspark starts the local server with every setting, then also tries to set the
        # static ones (spark.ui.enabled, spark.jars, ...) on the new Connect session and
        # warns that it cannot: they are in force on the server already
        warnings.filterwarnings("ignore", message="Failed to set", category=UserWarning)
        spark = builder.getOrCreate()
    if local:
        _quiet_logs()
    return register(_require_delta(spark) if delta else spark)
