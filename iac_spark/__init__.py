"""iac_spark: zipped DICOM archives → IatroCache (.iac) packs + a Delta catalog, on Spark.

Example:
    >>> import iac_spark
    >>> spark = iac_spark.local_session()                                  # doctest: +SKIP
    >>> df = spark.read.format("zipdcm").load("/data/tcia")                # doctest: +SKIP
    >>> df.select("path", "member", "modality", "error").show(3)           # doctest: +SKIP

Spark-dependent names are imported lazily, so ``import iac_spark`` stays cheap and
the pure-Python layers (``iac_spark.inputs``) work without a JVM.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "build_packs",
    "build_text_packs",
    "local_session",
    "register",
    "remote_session",
]


def __getattr__(name: str) -> Any:
    if name in ("local_session", "register", "remote_session"):
        from . import session

        return getattr(session, name)
    if name in ("build_packs", "build_text_packs"):
        from . import spark_executor

        return getattr(spark_executor, name)
    raise AttributeError(f"module 'iac_spark' has no attribute {name!r}")
