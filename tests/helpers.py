"""Test helpers: write zips with raw (non-UTF-8) member names and odd members."""

from __future__ import annotations

import zipfile
from pathlib import Path


class RawNameZipInfo(zipfile.ZipInfo):
    """A ZipInfo whose name is stored as given raw bytes, without the UTF-8 flag."""

    def __init__(self, raw_name: bytes) -> None:
        super().__init__(raw_name.decode("cp437"), date_time=(2020, 1, 1, 0, 0, 0))
        self._raw_name = raw_name
        self.compress_type = zipfile.ZIP_DEFLATED

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:
        return self._raw_name, self.flag_bits & ~0x800


def write_zip(path: Path, members: dict[str, bytes], *, gbk_names: bool = False) -> Path:
    """Write ``members`` into a deflated zip; with ``gbk_names`` names are stored as GBK bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            if gbk_names and not name.isascii():
                zf.writestr(RawNameZipInfo(name.encode("gbk")), data)
            else:
                zf.writestr(name, data)
    return path
