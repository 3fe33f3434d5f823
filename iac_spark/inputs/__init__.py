"""Pure-Python input layer: discover files, survey zips once, open members, walk scans. No pyspark.

Example:
    >>> from iac_spark.inputs import discover, survey
    >>> callable(discover) and callable(survey)
    True
"""

from __future__ import annotations

__all__ = ["InputFile", "Source", "discover", "survey"]

from .discover import InputFile, discover
from .survey import Source, survey
