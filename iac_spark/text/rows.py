"""Clinical notes as scan rows: the :class:`~iac_spark.inputs.scan.MemberParser` of ``ziptext``.

:class:`TextParser` turns one ``.txt`` member into the ``ziptext`` contract columns: the fields
of its path (``pathPattern``), the encoding it was decoded with, its length in characters and
its text. A member whose name does not pass ``pathGlobFilter`` (``*.txt``) is skipped and
counted; a path that does not match the pattern, an empty, oversized, binary or undecodable
note is an error row naming file and member — never mangled text, never a silent drop.

Example:
    >>> p = TextParser()
    >>> data = "主诉：发热两天。".encode("gb18030")
    >>> name = "XJ/P1/2024-01-01/入院记录_20240101000000.txt"
    >>> values = dict(zip(p.schema.names, p.parse(name, name, len(data), data[:132], data, None)))
    >>> values["doc_id"], values["encoding"], values["n_chars"]
    ('P1/2024-01-01/入院记录_20240101000000', 'gb18030', 8)
    >>> p.skips("XJ/LICENSE", b"MIT"), p.skips("XJ/P1/a.TXT", b"x")
    (True, False)
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from .decode import AUTO, DEFAULT_MAX_DOC_BYTES, Normalize, check_document_size, decode_document
from .fields import DEFAULT_PATH_PATTERN, compile_path_pattern, path_fields

__all__ = ["DEFAULT_GLOB", "TEXT_SCHEMA", "TextParser"]

#: ``pathGlobFilter`` default: members (and bare files) named ``*.txt``, in any case.
DEFAULT_GLOB = "*.txt"

#: The ``ziptext`` payload columns (between ``crc32`` and ``status``), in contract order.
TEXT_SCHEMA = pa.schema(
    [
        ("institution", pa.string()),
        ("patient_id", pa.string()),
        ("encounter", pa.string()),
        ("doc_type", pa.string()),
        ("doc_timestamp", pa.string()),
        ("doc_id", pa.string()),
        ("encoding", pa.string()),
        ("n_chars", pa.int64()),
        ("text", pa.string()),
    ]
)


class TextParser:
    """Decode notes into row values (see the module docstring)."""

    whole_member = True
    schema = TEXT_SCHEMA

    def __init__(
        self,
        *,
        path_pattern: str = DEFAULT_PATH_PATTERN,
        encoding: str = AUTO,
        glob_filter: str | None = DEFAULT_GLOB,
        max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES,
        normalize: Normalize | None = None,
    ) -> None:
        self.pattern = compile_path_pattern(path_pattern)
        self.encoding = encoding
        self.glob = (glob_filter or "*").lower()
        self.max_doc_bytes = max_doc_bytes
        self.normalize = normalize

    def skips(self, name: str, head: bytes) -> bool:
        base = posixpath.basename(name.rsplit("!", 1)[-1].replace("\\", "/")).lower()
        return not fnmatch.fnmatchcase(base, self.glob)

    def precheck(self, where: str, name: str, size: int) -> None:
        """Refuse empty or oversized notes from their declared size, before reading them."""
        check_document_size(size, where, max_doc_bytes=self.max_doc_bytes)

    def parse(
        self,
        where: str,
        name: str,
        size: int,
        head: bytes,
        data: bytes | None,
        fetch: Callable[[int], bytes] | None,
    ) -> tuple[Any, ...]:
        fields = path_fields(name, self.pattern, where)
        doc = decode_document(
            data if data is not None else b"",
            where,
            encoding=self.encoding,
            max_doc_bytes=self.max_doc_bytes,
            normalize=self.normalize,
        )
        return (
            fields.institution, fields.patient_id, fields.encounter, fields.doc_type,
            fields.doc_timestamp, fields.doc_id, doc.encoding, doc.n_chars, doc.text,
        )  # fmt: skip
