"""Spark Python data sources: ``zipdcm`` and ``ziptext`` (scan archives), ``iac`` (read packs back)."""

from __future__ import annotations

__all__ = ["ZipDcmDataSource", "ZipTextDataSource"]

from .zipdcm import ZipDcmDataSource
from .ziptext import ZipTextDataSource
