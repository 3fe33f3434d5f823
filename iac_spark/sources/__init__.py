"""Spark Python data sources: ``zipdcm`` (scan zips) and ``iac`` (read packs back)."""

from __future__ import annotations

__all__ = ["ZipDcmDataSource"]

from .zipdcm import ZipDcmDataSource
