"""Local SparkSession for the CLI, demo and tests, and data source registration.

Example:
    >>> import iac_spark
    >>> spark = iac_spark.local_session()                       # doctest: +SKIP
    >>> spark.read.format("zipdcm").load("demo_data").count()   # doctest: +SKIP
    240
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING, Any

from .errors import JavaNotFoundError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["check_java", "local_session", "register"]


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


def register(spark: SparkSession) -> SparkSession:
    """Register the ``zipdcm`` and ``iac`` data sources on ``spark`` (idempotent); returns it."""
    from .sources import ZipDcmDataSource

    spark.dataSource.register(ZipDcmDataSource)
    try:
        from .sources.iac import IacDataSource
    except ImportError:  # pragma: no cover - during partial installs only
        pass
    else:
        spark.dataSource.register(IacDataSource)
    return spark


def local_session(
    master: str = "local[*]",
    *,
    app_name: str = "iac_spark",
    shuffle_partitions: int = 8,
    conf: dict[str, Any] | None = None,
) -> SparkSession:
    """A local SparkSession (UI off, quiet logs) with our sources registered.

    Reuses an active session if there is one. Raises :class:`JavaNotFoundError`
    when Java is missing, instead of PySpark's long stack trace.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return register(active)
    check_java()
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
    for key, value in (conf or {}).items():
        builder = builder.config(key, str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("IAC_SPARK_LOG_LEVEL", "ERROR"))
    return register(spark)
