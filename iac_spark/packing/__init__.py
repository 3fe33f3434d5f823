"""Packing: executor shard writer, driver merge, and the ``build_packs`` orchestration."""

from __future__ import annotations

__all__ = ["BuildResult", "build_packs"]

from .build import BuildResult, build_packs
