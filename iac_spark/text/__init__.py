"""The text codec: decode clinical notes and read their fields from the path. No pyspark.

The ``ziptext`` source and the text pack builder call these pure functions; see
:mod:`iac_spark.text.decode` for the encoding detection rule,
:mod:`iac_spark.text.fields` for ``pathPattern`` and :mod:`iac_spark.text.errors`
for the failure modes (each an :class:`iac_spark.errors.MemberError`).

Example:
    >>> from iac_spark.text import decode_document, path_fields
    >>> member = "XJ/Patient_00000001/2024-01-01/入院记录_20240101000000.txt"
    >>> data = "主诉：发热两天。".encode("gb18030")
    >>> d, f = decode_document(data, member), path_fields(member)
    >>> d.text, d.encoding, d.n_chars, f.doc_id
    ('主诉：发热两天。', 'gb18030', 8, 'Patient_00000001/2024-01-01/入院记录_20240101000000')
"""

from __future__ import annotations

from iac_spark.text.decode import (
    AUTO,
    DEFAULT_MAX_DOC_BYTES,
    Decoded,
    check_document_size,
    decode_document,
    resolve_encoding,
)
from iac_spark.text.errors import (
    BinaryContentError,
    DocumentTooLargeError,
    EmptyDocumentError,
    EncodingConflictError,
    PathPatternMismatchError,
    UndecodableTextError,
    UnsupportedEncodingError,
)
from iac_spark.text.fields import (
    DEFAULT_PATH_PATTERN,
    OPTIONAL_GROUPS,
    REQUIRED_GROUPS,
    PathFields,
    compile_path_pattern,
    make_doc_id,
    path_fields,
)

__all__ = [
    "AUTO",
    "DEFAULT_MAX_DOC_BYTES",
    "DEFAULT_PATH_PATTERN",
    "OPTIONAL_GROUPS",
    "REQUIRED_GROUPS",
    "BinaryContentError",
    "Decoded",
    "DocumentTooLargeError",
    "EmptyDocumentError",
    "EncodingConflictError",
    "PathFields",
    "PathPatternMismatchError",
    "UndecodableTextError",
    "UnsupportedEncodingError",
    "check_document_size",
    "compile_path_pattern",
    "decode_document",
    "make_doc_id",
    "path_fields",
    "resolve_encoding",
]
