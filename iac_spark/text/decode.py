"""Decode one clinical text document: bytes in, exact text (or a specific error) out.

Detection rule (``encoding="auto"``), in this order:

1. **Size.** 0 bytes → :class:`EmptyDocumentError`; more than ``max_doc_bytes`` →
   :class:`DocumentTooLargeError` (before any decoding).
2. **Byte-order mark.** ``EF BB BF`` → UTF-8 (``"utf-8-sig"``); ``FF FE 00 00`` /
   ``00 00 FE FF`` → UTF-32 LE / BE; ``FF FE`` / ``FE FF`` → UTF-16 LE / BE
   (``"utf-16-le"`` / ``"utf-16-be"``). The BOM decides; the rest must decode
   strictly in that encoding. The BOM is stripped from ``text``.
3. **No BOM.** A NUL byte means binary (:class:`BinaryContentError`): neither UTF-8
   nor GB18030 text contains one. Then strict **UTF-8** (``"utf-8"``; ASCII is
   UTF-8), then strict **GB18030** (``"gb18030"``, a superset of GBK and GB2312).
   UTF-8 goes first because UTF-8 text is often valid GB18030 but GB18030 text is
   rarely valid UTF-8: each hanzi's two bytes must also fit UTF-8's lead /
   continuation pattern, which 930 of the 6,763 GB2312 hanzi do alone and runs of
   them ever less (see the table). One tie-break, for short notes: bytes valid in
   both are read as GB18030 when the UTF-8 reading holds a character no note uses
   (below U+0800 but outside Latin-1, Latin Extended-A, pinyin letters, Greek,
   Cyrillic and Arabic: IPA, spacing modifiers, combining marks, archaic Cyrillic
   ...) and the GB18030 reading is ASCII and GB2312 only. ``血压146/88mmHg`` is
   valid UTF-8 (``Ѫѹ146/88mmHg``) and comes out right this way; UTF-8 text in
   Russian, Kazakh, Uyghur, pinyin or with ``° × µ`` keeps its UTF-8 reading.
   What remains are GB18030 notes of a few hanzi that read as Latin, Greek,
   Cyrillic or Arabic letters (``酶35U/L`` → ``ø35U/L``; 419 single hanzi): force
   ``encoding=gb18030`` for a corpus of such notes. Measured on 300,000 random
   hanzi-only notes per cell (ASCII between them changes little; full-width
   punctuation such as ``。，：`` is never valid UTF-8 and ends the odds):

   =============================  ========  ========  ========  ===========
   hanzi in the note              2         4         6         8, 10
   =============================  ========  ========  ========  ===========
   3,755 frequent: valid UTF-8    3.3e-2    1.1e-3    2.3e-5    3e-6, 0
   ... read as UTF-8 here         6.1e-3    4.7e-5    0         0, 0
   68 clinical: valid UTF-8       8.6e-2    7.4e-3    6.9e-4    5e-5, 3e-6
   ... read as UTF-8 here         4.2e-2    1.7e-3    6.7e-5    1.3e-5, 0
   =============================  ========  ========  ========  ===========

   Big5 and Shift-JIS are never guessed: a GB18030 reading in which more than 1 in
   20 non-ASCII characters is a private-use character (how Big5 text reads as
   GB18030) is refused with :class:`UnsupportedEncodingError`.
4. **Text check** on the decoded text: a NUL character, or control characters
   other than ``\\t \\n \\v \\f \\r`` in more than 1 in 100 characters, means
   :class:`BinaryContentError`; nothing but whitespace (or only a BOM) means
   :class:`EmptyDocumentError`.

Neither UTF-8 nor GB18030 → :class:`UndecodableTextError` naming the first bad
byte of each. Nothing is ever decoded with replacement characters.

A forced ``encoding`` (any Python text codec name: ``gb18030``, ``gbk``,
``utf-8``, ``utf-16-le``, ``big5`` ...) skips detection but not the checks: a BOM of
that encoding is stripped (``utf-8`` with a BOM is reported as ``"utf-8-sig"``;
``utf-16`` / ``utf-32`` need a BOM to know the byte order), a BOM of another
encoding is an :class:`EncodingConflictError`.

``text`` is exactly the decoded text (line ends kept) unless ``normalize="NFC"``;
``n_chars == len(text)``.

Example:
    >>> from iac_spark.text.decode import decode_document
    >>> note = "主诉：咳嗽三天。体温37.8℃"
    >>> d = decode_document(note.encode("gb18030"), "/d/a.zip!XJ/P1/e/入院记录_20240101000000.txt")
    >>> d.encoding, d.n_chars, d.text == note
    ('gb18030', 15, True)
    >>> decode_document(b"\\xef\\xbb\\xbf" + note.encode(), "x.txt").encoding
    'utf-8-sig'
    >>> decode_document(b"\\x89PNG\\r\\n\\x1a\\n\\x00\\x00", "/d/scan.txt")
    Traceback (most recent call last):
    ...
    iac_spark.text.errors.BinaryContentError: /d/scan.txt: NUL byte at offset 8: binary content, not text
"""

from __future__ import annotations

import codecs
import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from iac_spark.errors import OptionError
from iac_spark.text.errors import (
    BinaryContentError,
    DocumentTooLargeError,
    EmptyDocumentError,
    EncodingConflictError,
    UndecodableTextError,
    UnsupportedEncodingError,
)

__all__ = [
    "AUTO",
    "DEFAULT_MAX_DOC_BYTES",
    "Decoded",
    "check_document_size",
    "decode_document",
    "resolve_encoding",
]

AUTO = "auto"
DEFAULT_MAX_DOC_BYTES = 16 * 1024 * 1024
"""``maxDocBytes`` default: 16 MiB."""

Normalize = Literal["NFC"]

# (BOM, codec that decodes what follows it, name reported in the `encoding` column);
# UTF-32 LE first: its BOM starts with the UTF-16 LE one.
_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16-be"),
)
# forced encoding -> the BOM codecs it accepts (stripped); other BOMs are a conflict
_BOM_FAMILY: dict[str, tuple[str, ...]] = {
    "utf-8": ("utf-8",),
    "utf-8-sig": ("utf-8",),
    "utf-16": ("utf-16-le", "utf-16-be"),
    "utf-16-le": ("utf-16-le",),
    "utf-16-be": ("utf-16-be",),
    "utf-32": ("utf-32-le", "utf-32-be"),
    "utf-32-le": ("utf-32-le",),
    "utf-32-be": ("utf-32-be",),
}
_NEEDS_BOM = ("utf-16", "utf-32")  # byte order unknown without a BOM

# control characters that are not text (tab, LF, VT, FF, CR are); NUL is checked apart
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")

# Below U+0800 (what GB2312 byte pairs read as when they happen to be valid UTF-8),
# the characters a note may hold; the rest (C1 controls, IPA, spacing modifiers,
# combining marks, most of Latin Extended-B, archaic Cyrillic, Armenian, Hebrew,
# Syriac, Thaana, NKo) make a UTF-8 reading implausible. Decomposed (NFD) Latin text
# keeps UTF-8 all the same: its common marks (U+0300..U+030F) read as GB18030
# characters outside GB2312.
_PLAUSIBLE_BELOW_0800 = (
    (0x00A0, 0x017F),  # Latin-1 Supplement (° ± × µ ² é), Latin Extended-A (ā ē ğ ş)
    (0x018F, 0x018F),  # Ə
    (0x01CD, 0x01DC),  # pinyin tone letters ǎ ǐ ǒ ǔ ǖ ǘ ǚ ǜ
    (0x0259, 0x0259),  # ə (Kazakh, Uyghur and Azerbaijani Latin)
    (0x02C7, 0x02C7),  # ˇ tone mark
    (0x02C9, 0x02CB),  # ˉ ˊ ˋ tone marks
    (0x02D9, 0x02D9),  # ˙ tone mark
    (0x0370, 0x03FF),  # Greek (α β γ μ)
    (0x0400, 0x045F),  # Cyrillic (Russian)
    (0x0490, 0x04FF),  # Cyrillic letters of Kazakh, Kyrgyz, Uzbek, Tatar ...
    (0x0600, 0x06FF),  # Arabic (Uyghur, Kazakh Arabic script)
)


def _implausible_class() -> re.Pattern[str]:
    gaps, low = [], 0x0080
    for start, end in _PLAUSIBLE_BELOW_0800:
        if start > low:
            gaps.append(f"{chr(low)}-{chr(start - 1)}")
        low = end + 1
    gaps.append(f"{chr(low)}-\u07ff")
    return re.compile(f"[{''.join(gaps)}]")


_IMPLAUSIBLE = _implausible_class()
_MAX_CONTROL_PER_CHAR = 1 / 100
_MAX_PRIVATE_USE_PER_NON_ASCII = 1 / 20


@dataclass(frozen=True)
class Decoded:
    """A decoded document.

    ``encoding`` is what the ``encoding`` column stores: ``"utf-8"``, ``"utf-8-sig"``
    (UTF-8 with a BOM), ``"utf-16-le"`` / ``"utf-16-be"`` (with a BOM), ``"gb18030"``,
    or the canonical name of a forced encoding. ``n_chars == len(text)``.
    """

    text: str
    encoding: str
    n_chars: int


@functools.lru_cache(maxsize=64)
def resolve_encoding(name: str) -> str:
    """Canonical name of an ``encoding`` option value (``"auto"`` or a Python text codec).

    >>> resolve_encoding("GBK"), resolve_encoding("UTF8"), resolve_encoding(" Auto ")
    ('gbk', 'utf-8', 'auto')
    >>> resolve_encoding("base64")
    Traceback (most recent call last):
    ...
    iac_spark.errors.OptionError: encoding: 'base64' is not a text encoding; use auto or a codec name such as gb18030, utf-8, utf-16-le
    """
    if name.strip().lower() == AUTO:
        return AUTO
    hint = "use auto or a codec name such as gb18030, utf-8, utf-16-le"
    try:
        canonical = codecs.lookup(name.strip()).name
        "".encode(canonical)  # LookupError for non-text codecs (base64, zlib, rot13, ...)
    except LookupError:
        known = "is not a text encoding" if _is_codec(name.strip()) else "is not a known encoding"
        raise OptionError(f"encoding: {name!r} {known}; {hint}") from None
    return canonical


def _is_codec(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def check_document_size(
    size: int, where: str, *, max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES
) -> None:
    """Refuse a document by its size alone (a zip directory's size, before reading it).

    >>> check_document_size(1200, "a.txt")
    >>> check_document_size(0, "/d/a.zip!b.txt")
    Traceback (most recent call last):
    ...
    iac_spark.text.errors.EmptyDocumentError: /d/a.zip!b.txt: 0 bytes, an empty document
    """
    if isinstance(max_doc_bytes, bool) or not isinstance(max_doc_bytes, int) or max_doc_bytes < 1:
        raise OptionError(f"maxDocBytes must be a positive number of bytes, got {max_doc_bytes!r}")
    if size == 0:
        raise EmptyDocumentError(f"{where}: 0 bytes, an empty document")
    if size > max_doc_bytes:
        raise DocumentTooLargeError(
            f"{where}: {size} bytes, above maxDocBytes={max_doc_bytes}; "
            "raise maxDocBytes if such documents are notes"
        )


def decode_document(
    data: bytes,
    where: str,
    *,
    encoding: str = AUTO,
    max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES,
    normalize: Normalize | None = None,
) -> Decoded:
    """Decode a document's bytes by the rule of this module (see the module docstring).

    ``where`` names the document in error messages (``iac_spark.errors.location``).
    Raises a :class:`iac_spark.errors.MemberError` subclass from
    :mod:`iac_spark.text.errors` for every bad document, or
    :class:`iac_spark.errors.OptionError` for a bad ``encoding`` / ``normalize`` /
    ``max_doc_bytes``.

    >>> decode_document(b"\\xff\\xfe" + "患者咳嗽三天伴发热".encode("utf-16-le"), "a.txt")
    Decoded(text='患者咳嗽三天伴发热', encoding='utf-16-le', n_chars=9)
    >>> decode_document(b"\\xd6\\xd0\\xff", "/d/a.txt")
    Traceback (most recent call last):
    ...
    iac_spark.text.errors.UndecodableTextError: /d/a.txt: neither UTF-8 (byte 0xD6 at offset 0) nor GB18030 (byte 0xFF at offset 2)
    """
    if normalize is not None and normalize != "NFC":
        raise OptionError(f"normalize must be NFC or not set, got {normalize!r}")
    check_document_size(len(data), where, max_doc_bytes=max_doc_bytes)
    forced = resolve_encoding(encoding)
    if forced == AUTO:
        text, name, skip = _auto(data, where)
    else:
        text, name, skip = _forced(data, where, forced)
    _check_text(text, data, skip, name, where)
    if normalize == "NFC" and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return Decoded(text, name, len(text))


def _sniff_bom(data: bytes) -> tuple[bytes, str, str] | None:
    for bom, codec, name in _BOMS:
        if data.startswith(bom):
            return bom, codec, name
    return None


def _bad_byte(data: bytes, exc: UnicodeDecodeError, skip: int) -> str:
    at = skip + exc.start
    return f"byte 0x{data[at]:02X} at offset {at}" if at < len(data) else f"truncated at {at}"


def _decode_after_bom(data: bytes, bom: bytes, codec: str, where: str) -> str:
    try:
        return data[len(bom) :].decode(codec)
    except UnicodeDecodeError as e:
        raise UndecodableTextError(
            f"{where}: starts with a {codec.upper()} byte-order mark but is not valid "
            f"{codec.upper()} ({_bad_byte(data, e, len(bom))})"
        ) from e


def _auto(data: bytes, where: str) -> tuple[str, str, int]:
    """(text, encoding name, bytes skipped for the BOM) by the detection rule."""
    sniffed = _sniff_bom(data)
    if sniffed is not None:
        bom, codec, name = sniffed
        return _decode_after_bom(data, bom, codec, where), name, len(bom)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise BinaryContentError(
            f"{where}: NUL byte at offset {nul}: binary content, not text{_utf16_hint(data)}"
        )
    failures: list[str] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        failures.append(f"UTF-8 ({_bad_byte(data, e, 0)})")
    else:
        if not _IMPLAUSIBLE.search(text) or not _is_gb2312_reading(data):
            return text, "utf-8", 0
        # the tie-break: valid GB18030 too (ASCII and GB2312 only), read as GB18030 below
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError as e:
        failures.append(f"GB18030 ({_bad_byte(data, e, 0)})")
    else:
        _check_private_use(text, where)
        return text, "gb18030", 0
    if _control_bytes(data) > len(data) * _MAX_CONTROL_PER_CHAR:
        raise BinaryContentError(
            f"{where}: {_control_bytes(data)} control bytes in {len(data)} and not valid "
            "UTF-8 or GB18030: binary content, not text"
        )
    raise UndecodableTextError(f"{where}: neither {' nor '.join(failures)}")


def _forced(data: bytes, where: str, forced: str) -> tuple[str, str, int]:
    sniffed = _sniff_bom(data)
    family = _BOM_FAMILY.get(forced, ())
    if forced.startswith("utf-16") and sniffed is not None and sniffed[1].startswith("utf-32"):
        sniffed = _sniff_bom(data[:2])  # FF FE 00 00 is a UTF-16 LE BOM and U+0000 here
    if sniffed is not None:
        bom, codec, name = sniffed
        if codec not in family:
            raise EncodingConflictError(
                f"{where}: encoding={forced} was forced but the document starts with a "
                f"{codec.upper()} byte-order mark; use encoding=auto"
            )
        return _decode_after_bom(data, bom, codec, where), name, len(bom)
    if forced in _NEEDS_BOM:
        raise UndecodableTextError(
            f"{where}: encoding={forced} was forced but the document has no byte-order mark, "
            f"so its byte order is unknown; force {forced}-le or {forced}-be"
        )
    if forced == "utf-8-sig":  # no BOM here: plain UTF-8
        forced = "utf-8"
    try:
        return data.decode(forced), forced, 0
    except UnicodeDecodeError as e:
        raise UndecodableTextError(
            f"{where}: not valid {forced} (the forced encoding): {_bad_byte(data, e, 0)}"
        ) from e


def _is_gb2312_reading(data: bytes) -> bool:
    """True when the bytes read as GB18030 into ASCII and GB2312 characters only."""
    try:
        data.decode("gb18030").encode("gb2312")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return False
    return True


def _check_private_use(text: str, where: str) -> None:
    if not _PRIVATE_USE.search(text):
        return
    pua = len(_PRIVATE_USE.findall(text))
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    if pua > non_ascii * _MAX_PRIVATE_USE_PER_NON_ASCII:
        raise UnsupportedEncodingError(
            f"{where}: reads as GB18030 only with {pua} private-use characters in "
            f"{non_ascii} non-ASCII ones: probably Big5 or another encoding that "
            "auto-detection does not cover; set the encoding option"
        )


def _check_text(text: str, data: bytes, skip: int, name: str, where: str) -> None:
    """Empty / whitespace-only / binary checks on the decoded text."""
    if not text:
        raise EmptyDocumentError(f"{where}: only a byte-order mark ({skip} bytes), no text")
    if text.isspace():
        raise EmptyDocumentError(f"{where}: only whitespace ({len(data)} bytes), no text")
    first = _CONTROL.search(text)
    if first is None:
        return
    count = len(_CONTROL.findall(text))
    if "\x00" in text or count > len(text) * _MAX_CONTROL_PER_CHAR:
        at = text.index("\x00") if "\x00" in text else first.start()
        offset = skip + len(text[:at].encode(_codec_of(name)))
        what = "a NUL character" if text[at] == "\x00" else f"{count} control characters"
        raise BinaryContentError(
            f"{where}: {what} in {len(text)} (first at byte offset {offset}): "
            "binary content, not text"
        )


def _codec_of(name: str) -> str:
    return "utf-8" if name == "utf-8-sig" else name


def _control_bytes(data: bytes) -> int:
    return len(data) - len(data.translate(None, _CONTROL_BYTES))


_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x20), 0x7F])


def _utf16_hint(data: bytes) -> str:
    head = data[:4096]
    even, odd = head[0::2].count(0), head[1::2].count(0)
    half = max(len(head) // 2, 1)
    if odd > 0.4 * half and even < 0.05 * half:
        return " (looks like UTF-16-LE without a byte-order mark: set encoding=utf-16-le)"
    if even > 0.4 * half and odd < 0.05 * half:
        return " (looks like UTF-16-BE without a byte-order mark: set encoding=utf-16-be)"
    return ""
