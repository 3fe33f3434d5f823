"""Pure-Python input layer: discover files, survey zips once, open members, walk scans. No pyspark.

Example:
    >>> from iac_spark.inputs import discover, open_archive, survey
    >>> callable(discover) and callable(survey) and callable(open_archive)
    True
"""

from __future__ import annotations

__all__ = ["Archive", "InputFile", "InputLimits", "Source", "discover", "open_archive", "survey"]

from .archive import Archive, open_archive
from .discover import InputFile, discover
from .limits import InputLimits
from .survey import Source, survey
