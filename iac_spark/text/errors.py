"""Exception classes of the text codec, one per failure mode.

Each is an :class:`iac_spark.errors.MemberError`, so a scan turns it into an
error row (``"ErrorClass: message"`` by :func:`iac_spark.errors.error_text`) in
PERMISSIVE mode. Every message starts with the location of the bad input
(``/data/a.zip!XJ/.../x.txt``, see :func:`iac_spark.errors.location`) and says what
was wrong with it.

Example:
    >>> from iac_spark.errors import MemberError, error_text
    >>> from iac_spark.text.errors import EmptyDocumentError
    >>> exc = EmptyDocumentError("/d/a.zip!XJ/P1/2024-01-01/入院记录_20240101000000.txt: 0 bytes")
    >>> isinstance(exc, MemberError), error_text(exc)[:29]
    (True, 'EmptyDocumentError: /d/a.zip!')
"""

from __future__ import annotations

from iac_spark.errors import MemberError

__all__ = [
    "BinaryContentError",
    "DocumentTooLargeError",
    "EmptyDocumentError",
    "EncodingConflictError",
    "PathPatternMismatchError",
    "UndecodableTextError",
    "UnsupportedEncodingError",
]


class EmptyDocumentError(MemberError):
    """A text document has no text: zero bytes, only a byte-order mark, or only whitespace.

    Raised by :func:`iac_spark.text.decode_document` (and by
    :func:`iac_spark.text.check_document_size` for a member whose size is 0). A note
    with no characters other than whitespace carries nothing to train on, so it is
    reported instead of being packed as an empty document. Check the export that
    produced the file; nothing can be recovered from it.
    """


class DocumentTooLargeError(MemberError):
    """A text document is larger than ``maxDocBytes`` (16 MiB by default).

    Raised before the document is decoded (a clinical note is a few KB; a file this
    large is almost always a log, a dump or a mis-named archive). Raise the
    ``maxDocBytes`` option only if such documents really are notes.
    """


class UndecodableTextError(MemberError):
    """The bytes are not valid text in any encoding tried.

    With ``encoding=auto`` the document was neither valid UTF-8 nor valid GB18030
    (or its UTF-16 / UTF-32 byte-order mark was followed by invalid code units); with
    a forced ``encoding`` it is not valid in that encoding. The message gives the
    byte offset and value of the first bad byte for each encoding tried. The file is
    usually truncated or corrupt, or in an encoding that must be forced with the
    ``encoding`` option (e.g. ``big5``, ``shift_jis``). Nothing is ever decoded with
    replacement characters.
    """


class EncodingConflictError(UndecodableTextError):
    """A forced ``encoding`` contradicts the document's byte-order mark.

    E.g. ``encoding=gb18030`` for a file that starts with the UTF-8 BOM
    ``EF BB BF``: decoding it anyway would turn the BOM into two stray characters
    and, most likely, the rest into mojibake. Use ``encoding=auto`` (the BOM then
    decides) or fix the files.
    """


class UnsupportedEncodingError(MemberError):
    """The bytes decode as GB18030, but into text no GB18030 writer produces.

    Auto-detection refuses a GB18030 reading in which private-use characters make
    up more than 1 in 20 of the non-ASCII characters: that is what Big5
    (Traditional Chinese) text looks like when read as GB18030, since Big5's most
    frequent characters fall into GB18030's user-defined areas. If the documents
    really are in Big5 (or another encoding auto-detection does not cover), force
    it with the ``encoding`` option; if they are GB18030 with hospital-defined
    characters, force ``encoding=gb18030``.
    """


class BinaryContentError(MemberError):
    """The document holds binary data, not text (an image, archive or dump named ``.txt``).

    Raised when the bytes contain NUL bytes (outside UTF-16 / UTF-32 with a
    byte-order mark) or when more than 1 in 100 characters is a control character
    other than tab, line feed, vertical tab, form feed and carriage return. The
    message gives the offset of the first offending byte. Remove the file from the
    input or exclude it with ``pathGlobFilter``; a UTF-16 file without a
    byte-order mark can be read with ``encoding=utf-16-le`` (or ``-be``).
    """


class PathPatternMismatchError(MemberError):
    """A document's path does not match ``pathPattern``, so it has no patient / doc_id.

    The fields (institution, patient_id, encounter, doc_type, doc_timestamp) come
    from the path only; a path off the layout cannot be attributed to a patient.
    Move the file into the layout, or give a ``pathPattern`` that matches the
    layout of these files (see :data:`iac_spark.text.DEFAULT_PATH_PATTERN`).
    """
