"""Reading packs safely: every section parsed and validated, every payload's CRC-32 checked.

iatro's ``VariableRecordPack`` returns whatever bytes are stored: a flipped data byte decodes to
a wrong payload, or fails inside the codec with a message that names nothing. The readers here
(:class:`VerifiedPack`, used by the ``iac`` Spark source, ``RecordDataset`` and ``verify``)
check before they decode and raise :class:`~iac_spark.errors.CorruptPackError` /
:class:`~iac_spark.errors.MissingPackError` naming the pack, the section or row, and what differs.

Example:
    >>> VerifiedPack("/nonexistent.iac", label="pack p-0000")                  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    iac_spark.errors.MissingPackError: pack p-0000: pack file is missing (/nonexistent.iac)
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from iatro.iac import Codec, PackReader

from ..errors import CorruptPackError, MissingPackError

__all__ = ["VerifiedPack", "check_payloads", "open_pack", "pack_tables", "read_section"]


def _section_bytes(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)


def read_section(path: str, header: dict[str, Any], section: str) -> pa.Table:
    """The ``slide`` or ``index`` table of a pack read straight from its span (offsets from
    its parsed ``header``) and fully validated (UTF-8, offsets): raises if it is damaged."""
    offset = int(header[f"{section}_table_offset"])
    length = int(header[f"{section}_table_length"])
    table = pa.ipc.open_stream(pa.py_buffer(_section_bytes(path, offset, length))).read_all()
    table.validate(full=True)  # invalid UTF-8, offsets out of range ... (not checked by reading)
    return table


def open_pack(path: str, label: str | None = None) -> tuple[PackReader, dict[str, Any]]:
    """An open :class:`PackReader` and its header, or :class:`CorruptPackError` naming the
    header (:class:`MissingPackError` when there is no file). ``label`` names the pack in
    messages (default: its path)."""
    label = label or path
    if not os.path.isfile(path):
        raise MissingPackError(f"{label}: pack file is missing ({path})", pack=path)
    reader = PackReader(path)
    try:
        header = dict(reader.header)
    except Exception as exc:
        reader.close()
        raise CorruptPackError(
            f"{label}: header does not parse: {type(exc).__name__}: {exc}",
            pack=path, section="header",
        ) from exc  # fmt: skip
    return reader, header


def pack_tables(
    reader: PackReader, header: dict[str, Any], label: str | None = None
) -> tuple[pa.Table, pa.Table]:
    """(slide table, index table) of an open pack, fully validated, or
    :class:`CorruptPackError` naming the section that is damaged."""
    path = str(reader.package_path)
    label = label or path
    try:
        slides, index = reader.slide_table, reader.index_table
        for section, table in (("slide table", slides), ("index table", index)):
            try:
                table.validate(full=True)
            except Exception as exc:
                raise CorruptPackError(
                    f"{label}: {section} holds invalid data: {type(exc).__name__}: {exc}",
                    pack=path, section=section,
                ) from exc  # fmt: skip
    except CorruptPackError:
        raise
    except Exception as exc:
        section = "tables"
        for name in ("slide", "index"):  # which span is damaged, for the message
            try:
                read_section(path, header, name)
            except Exception:
                section = f"{name} table"
                break
        raise CorruptPackError(
            f"{label}: {section} does not parse: {type(exc).__name__}: {exc}",
            pack=path, section=section,
        ) from exc  # fmt: skip
    return slides, index


def check_payloads(
    label: str, path: str, rows: Sequence[int], payloads: Sequence[bytes], crcs: Any
) -> None:
    """Raise :class:`CorruptPackError` for the first payload whose CRC-32 is not ``crcs[row]``."""
    for row, payload in zip(rows, payloads, strict=True):
        want = int(crcs[row])
        got = zlib.crc32(payload)
        if got != want:
            raise CorruptPackError(
                f"{label} row {row}: stored bytes have crc32 {got:08x}, the index says "
                f"{want:08x} (the record is corrupted)",
                pack=path, row=row, section="data",
            )  # fmt: skip


class VerifiedPack:
    """Read the records of one pack, each stored payload checked against its index CRC-32.

    iatro's ``VariableRecordPack`` returns whatever bytes are stored: a flipped data byte
    decodes to a wrong payload, or fails inside the codec with a message that names nothing.
    This reader checks every payload's CRC-32 before it decodes it and raises
    :class:`CorruptPackError` naming the pack and row; opening it checks the header and
    both tables (:class:`MissingPackError` when the file is gone).

    >>> VerifiedPack("/nonexistent.iac", label="pack p-0000")                  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    iac_spark.errors.MissingPackError: pack p-0000: pack file is missing (/nonexistent.iac)
    """

    def __init__(self, path: str, *, label: str | None = None) -> None:
        self.path = str(path)
        self.label = label or self.path
        self._reader, self.header = open_pack(self.path, self.label)
        try:
            self.slide_table, self.index_table = pack_tables(self._reader, self.header, self.label)
            if "crc32" not in self.index_table.column_names:
                raise CorruptPackError(
                    f"{self.label}: index table has no crc32 column", pack=self.path,
                    section="index table",
                )  # fmt: skip
            self._crcs = self.index_table.column("crc32").to_numpy()
        except BaseException:
            self._reader.close()
            raise
        self._codec: Any = None

    @property
    def record_count(self) -> int:
        return self.index_table.num_rows

    @property
    def codec(self) -> Any:
        """The header's codec (``iatro.iac.Codec``)."""
        if self._codec is None:
            h = self.header
            self._codec = Codec.create(h.get("codec", "none"), **(h.get("codec_params") or {}))
        return self._codec

    def read_payloads(self, rows: Sequence[int]) -> list[bytes]:
        """The stored (encoded) bytes of ``rows``, in order, each checked."""
        rows = [int(r) for r in rows]
        bad = [r for r in rows if not 0 <= r < self.record_count]
        if bad:
            raise IndexError(f"{self.label}: no row {bad[0]} (the pack has {self.record_count})")
        try:
            payloads = self._reader.read_payloads(rows)
        except Exception as exc:
            raise CorruptPackError(
                f"{self.label} rows {rows[:3]}{'…' if len(rows) > 3 else ''}: stored bytes "
                f"cannot be read: {type(exc).__name__}: {exc}", pack=self.path, section="data",
            ) from exc  # fmt: skip
        check_payloads(self.label, self.path, rows, payloads, self._crcs)
        return payloads

    def read_many(self, rows: Sequence[int], *, workers: int | None = None) -> list[Any]:
        """Decoded records of ``rows`` (``workers`` as ``VariableRecordPack.read_many``)."""
        rows = [int(r) for r in rows]
        payloads = self.read_payloads(rows)
        codec = self.codec
        try:
            if workers == 1 or len(payloads) == 1:
                return [codec.decode(p) for p in payloads]
            try:
                return list(codec.decode_many(payloads, workers=workers))
            except TypeError:  # a Python codec: decode_many(payloads) only
                return list(codec.decode_many(payloads))
        except Exception as exc:
            for row, p in zip(rows, payloads, strict=True):  # name the row that fails
                try:
                    codec.decode(p)
                except Exception as row_exc:
                    raise CorruptPackError(
                        f"{self.label} row {row}: stored bytes match their crc32 but do not "
                        f"decode: {type(row_exc).__name__}: {row_exc}",
                        pack=self.path, row=row, section="data",
                    ) from row_exc  # fmt: skip
            raise CorruptPackError(
                f"{self.label}: rows do not decode: {type(exc).__name__}: {exc}",
                pack=self.path, section="data",
            ) from exc  # fmt: skip

    def read(self, row: int) -> Any:
        """The decoded record at ``row``."""
        return self.read_many([row], workers=1)[0]

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> VerifiedPack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
