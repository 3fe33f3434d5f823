"""Fast, memoised DICOM JSON (PS3.18 Annex F.2) encoding of DICOM headers.

Why this module exists
----------------------
The ``zipdcm`` source emits one ``meta`` column per DICOM file: the header as
DICOM JSON without bulk data. ``pydicom.Dataset.to_json_dict()`` followed by
``json.dumps`` costs ~13 ms for a CT header, because every lazily parsed
``RawDataElement`` is first converted into a full ``DataElement`` (hooks,
validation, ``MultiValue``/``DSfloat``/``PersonName`` objects, ambiguous VR
correction), then into a dict, which ``json.dumps`` walks once more. The scan
target (>1,000 files/s on 2 cores including parsing, which alone costs
0.5-1.2 ms) leaves well under 0.3 ms for the encoding. So this module:

1. Encodes from the raw bytes of the elements (after ``dcmread`` the values
   of ``ds._dict`` are mostly still ``RawDataElement`` named tuples) and never
   goes through pydicom's ``DataElement`` conversion, except for sequences
   with a defined length (parsed with pydicom's ``convert_SQ``) and elements
   the caller already converted (plain ``DataElement`` instances).
2. Writes JSON text directly: one fragment ``"TTTTTTTT":{...}`` per element,
   built by concatenation with the C string escaper of the ``json`` module.
3. **Memoises fragments.** The files of a series repeat most header values
   (patient, study, equipment, geometry, acquisition parameters...).
   :class:`JsonEncoderCache` maps ``(tag, raw VR, raw value bytes, context)``
   to the finished fragment, the context (interned to a small int) holding
   everything else the encoding depends on: character set, byte order,
   implicit/explicit VR, pixel representation (for ``US or SS``) and bulk
   threshold. The keys of a whole dataset are built with C-level
   ``map``/``zip`` and looked up with one ``map(dict.get, keys)``, so with a
   warm cache a header costs a few C loops plus ``",".join``; only misses
   (a handful of per-instance values such as SOPInstanceUID) run Python
   code. Sequences stored with a defined length are memoised whole.

Output rules (PS3.18 F.2 semantics)
-----------------------------------
* Keys are 8 upper-case hex digits in ascending order. ``ds.file_meta``
  (group 0002) is not included, like ``Dataset.to_json``. Group length
  elements (gggg,0000) are omitted, as F.2.2 requires.
* String VRs are split on backslash into the ``"Value"`` array. Padding is
  removed per value: leading and trailing spaces/NULs for AE, AS, CS, DA, DT,
  TM, UI, SH and LO (not significant there), trailing ones only for UC, ST,
  LT, UT and PN, trailing whitespace for UR. Empty values of a multi-valued
  element are ``null`` (F.2.5); an element without any value has ``"vr"``
  only, and so has a sequence without items.
* PN values are ``{"Alphabetic": ..., "Ideographic": ..., "Phonetic": ...}``
  holding only the non-empty component groups (F.2.2).
* IS values are JSON integers. DS values are JSON numbers: a DS token that is
  already a valid JSON number literal is copied verbatim (no precision loss),
  other parseable ones (``"+1"``, ``".5"``, ``"5."``) become the ``repr`` of
  the float. Tokens that cannot be parsed, or are not finite, are emitted as
  JSON strings (F.2.3 allows strings for IS and DS).
* US/SS/UL/SL/UV/SV/FL/FD are decoded with ``struct`` in the dataset's byte
  order; non-finite FL/FD values become the strings ``"NaN"``,
  ``"Infinity"``, ``"-Infinity"`` so that the output stays strict JSON.
* AT values are 8-hex-digit upper-case strings.
* OB/OD/OF/OL/OV/OW/UN values up to ``bulk_threshold`` bytes are
  ``"InlineBinary"`` (base64 of the raw bytes, no byte swapping).
* **Bulk data is emitted with ``"vr"`` only** (no ``Value``, ``InlineBinary``
  or ``BulkDataURI``): Pixel Data (7FE0,0010), Float Pixel Data (7FE0,0008),
  Double Float Pixel Data (7FE0,0009), Overlay Data (60xx,3000) and Waveform
  Data (5400,1010) always, and binary VR values longer than
  ``bulk_threshold`` bytes. Keeping the element records that the attribute
  exists (pydicom with a bulk data handler returning ``None`` emits
  ``"BulkDataURI": null`` instead) without inventing a URI we cannot serve.
* Text VRs (SH, LO, UC, ST, LT, UT, PN) are decoded with the dataset's (or
  sequence item's) Specific Character Set, including ISO 2022 code
  extensions (through pydicom's ``decode_bytes``); undecodable bytes are
  replaced with U+FFFD, as pydicom's reader does, never raised.
* Implicit VR: the VR comes from the DICOM dictionary; private elements use
  the private dictionary through their private creator (creators are LO,
  unknown ones UN); an explicit ``UN`` of a known tag is replaced like pydicom
  does. Ambiguous VRs: ``US or SS`` is SS when the closest Pixel
  Representation is 1, else US; ``US or OW`` (LUT Data) is US when the first
  LUT Descriptor value is 1, else OW; ``OB or OW`` and ``US or SS or OW`` are
  OW.
* Bytes that do not fit their VR (an unknown VR, a numeric or AT value whose
  length is not a multiple of the value size, a sequence whose bytes do not
  parse) are emitted faithfully as ``{"vr":"UN","InlineBinary":...}`` of
  those bytes (``"vr"`` only above ``bulk_threshold``, like any binary
  value, or when the value is empty). The result always passes a strict
  ``json.loads``.
* Nothing is ever replaced by a placeholder: an element that cannot be
  encoded otherwise (a converted value of a type its VR cannot hold, a
  deferred value pydicom cannot load, sequences nested deeper than the
  recursion limit) raises :class:`~iac_spark.errors.DicomJsonError` naming
  the element, e.g. ``cannot encode element (0040,A730) > item 0 >
  (0010,0010): ...``.

pydicom internals (``Dataset._dict``, raw element fields, charset helpers,
``convert_SQ``) come from :mod:`iac_spark.dicom.compat` only.

Differences from ``pydicom.Dataset.to_json_dict`` are listed in the
docstring of :func:`dataset_to_json`.
"""

from __future__ import annotations

import base64
import codecs
import datetime
import decimal
import itertools
import json
import math
import numbers
import operator
import re
import struct
from collections.abc import Callable, Iterable
from typing import Any, Final

from pydicom.datadict import dictionary_VR, private_dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import DA, DT, TM, PersonName

from ..errors import DicomJsonError
from .compat import (
    DEFAULT_ENCODING,
    RAW_IS_IMPLICIT_VR,
    RAW_IS_LITTLE_ENDIAN,
    RAW_LENGTH,
    RAW_VALUE,
    RAW_VALUE_TELL,
    RAW_VR,
    RawDataElement,
    convert_encodings,
    convert_sq,
    decode_text,
    dict_key,
    element_tags,
    elements,
    new_raw_element,
    raw_length,
    raw_value,
    raw_vr,
    replace_un_with_known_vr,
)

__all__ = [
    "DEFAULT_BULK_THRESHOLD",
    "DicomJsonError",
    "JsonEncoderCache",
    "dataset_to_json",
    "default_cache",
    "is_bulk_data_tag",
]

DEFAULT_BULK_THRESHOLD: Final[int] = 1024
"""Binary (OB/OD/OF/OL/OV/OW/UN) values longer than this many bytes are bulk data."""

# ``json.encoder.encode_basestring`` is the C string escaper behind
# ``json.dumps(..., ensure_ascii=False)``: it returns the quoted JSON string.
_enc: Callable[[str], str] = json.encoder.encode_basestring
_b64: Final = base64.b64encode

_LATIN1: Final = "latin-1"  # pydicom's default encoding "iso8859", fast-path name
_STRIP_PAD: Final = " \x00"
_STRIP_WS: Final = " \x00\t\r\n\f\v"

_STRUCT: Final[dict[str, tuple[str, int]]] = {
    "US": ("H", 2),
    "SS": ("h", 2),
    "UL": ("L", 4),
    "SL": ("l", 4),
    "UV": ("Q", 8),
    "SV": ("q", 8),
    "FL": ("f", 4),
    "FD": ("d", 8),
}

# Lookup keys of the dataset's own key type (faster than plain ints, measured).
_BT_CHARSET: Final = dict_key(0x00080005)
_BT_PIXEL_REPRESENTATION: Final = dict_key(0x00280103)
_BT_LUT_DESCRIPTOR: Final = dict_key(0x00283002)
# pydicom's fix-up: a negative first LUT Descriptor value is really unsigned.
_LUT_DESCRIPTOR_TAGS: Final = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})
_BULK_TAGS: Final = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009, 0x54001010})
_ITEM_TAG_LE: Final = b"\xfe\xff\x00\xe0"  # (FFFE,E000) Item, little endian
_ITEM_TAG_BE: Final = b"\xff\xfe\xe0\x00"
# Attributes that differ in (nearly) every instance of a series: they are
# encoded every time but not memoised, so they do not churn the cache.
_PER_INSTANCE_TAGS: Final = frozenset(
    {
        0x00080013,  # InstanceCreationTime
        0x00080018,  # SOPInstanceUID
        0x0008002A,  # AcquisitionDateTime
        0x00080032,  # AcquisitionTime
        0x00080033,  # ContentTime
        0x00181060,  # TriggerTime
        0x00200013,  # InstanceNumber
        0x00200032,  # ImagePositionPatient
        0x00201041,  # SliceLocation
    }
)

# A JSON number literal (RFC 8259 grammar).
_JSON_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")

_DEFAULT_ENCODINGS: Final[tuple[str, ...]] = (DEFAULT_ENCODING,)


def is_bulk_data_tag(tag: int) -> bool:
    """Return True for tags whose value is always treated as bulk data.

    These are Pixel Data (7FE0,0010), Float Pixel Data (7FE0,0008), Double
    Float Pixel Data (7FE0,0009), Waveform Data (5400,1010) and Overlay Data
    (60xx,3000) for the even groups 6000-601E.
    """
    return tag in _BULK_TAGS or (tag & 0xFFE1FFFF) == 0x60003000


# --------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------

_Key = tuple[int, Any, Any, int]


class JsonEncoderCache:
    """Bounded memo of encoded DICOM JSON element fragments.

    Maps ``(tag, raw VR, raw value bytes, context id)`` to the finished
    fragment ``'"TTTTTTTT":{...}'``. The context id is an interned small int
    standing for ``(character set, little endian, implicit VR, pixel
    representation, bulk threshold)``, i.e. everything besides the element
    itself that its encoding depends on. Converted ``DataElement`` values of
    type ``str``/``int``/``float`` are memoised the same way.

    Bounded: when storing would exceed ``max_entries`` entries or
    ``max_bytes`` (approximate: value bytes + fragment characters + a fixed
    per-entry overhead) the whole memo is cleared first; a series re-warms it
    with a single file. Values longer than ``max_value_bytes`` and a few
    per-instance attributes (SOPInstanceUID, InstanceNumber,
    ImagePositionPatient, ...) are encoded every time and never stored.

    Not thread-safe: use one cache per thread (a Spark Python worker runs one
    partition iterator at a time, so one cache per worker process suits).
    Context ids come from a monotonic counter and are never reused, so even
    accidental concurrent use under the GIL should not yield wrong fragments,
    but the size accounting and statistics would be off.
    """

    __slots__ = (
        "_ctx_counter",
        "_ctx_ids",
        "_frags",
        "_nbytes",
        "_private_vrs",
        "clears",
        "lookups",
        "max_bytes",
        "max_entries",
        "max_value_bytes",
        "misses",
    )

    _ENTRY_OVERHEAD: Final = 160  # key tuple, dict slot, object headers (rough)

    def __init__(
        self,
        max_entries: int = 50_000,
        max_bytes: int = 64 * 1024 * 1024,
        max_value_bytes: int = 16 * 1024,
    ) -> None:
        if max_entries < 1 or max_bytes < 1 or max_value_bytes < 0:
            raise ValueError("cache limits must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_value_bytes = max_value_bytes
        self._frags: dict[_Key, str] = {}
        self._nbytes = 0
        self._ctx_ids: dict[tuple[Any, ...], int] = {}
        self._ctx_counter = itertools.count()
        self._private_vrs: dict[tuple[int, str], str] = {}
        self.lookups = 0
        self.misses = 0
        self.clears = 0

    def __len__(self) -> int:
        """Number of memoised element fragments."""
        return len(self._frags)

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the memoised fragments, in bytes."""
        return self._nbytes

    def clear(self) -> None:
        """Drop every memoised fragment (context ids are never reused)."""
        self._frags.clear()
        self._ctx_ids.clear()
        self._private_vrs.clear()
        self._nbytes = 0
        self.clears += 1

    def stats(self) -> dict[str, int]:
        """Return counters: entries, nbytes, lookups, misses, hits, clears."""
        return {
            "entries": len(self._frags),
            "nbytes": self._nbytes,
            "lookups": self.lookups,
            "misses": self.misses,
            "hits": self.lookups - self.misses,
            "clears": self.clears,
        }

    def _ctx_id(self, ctx: tuple[Any, ...]) -> int:
        cid = self._ctx_ids.get(ctx)
        if cid is None:
            cid = self._ctx_ids.setdefault(ctx, next(self._ctx_counter))
        return cid

    def _store(self, key: _Key, frag: str) -> None:
        value = key[2]
        size = len(frag) + self._ENTRY_OVERHEAD
        if type(value) is bytes or type(value) is str:
            size += len(value)
        if len(self._frags) >= self.max_entries or self._nbytes + size > self.max_bytes:
            self.clear()
        self._frags[key] = frag
        self._nbytes += size


_default_cache = JsonEncoderCache()


def default_cache() -> JsonEncoderCache:
    """Return the module-level cache used when ``dataset_to_json`` gets none."""
    return _default_cache


# --------------------------------------------------------------------------
# Encoding context and text decoding
# --------------------------------------------------------------------------

_Decoder = Callable[..., tuple[str, int]]
_DECODERS: dict[str, _Decoder] = {}


def _decoder_for(name: str) -> _Decoder:
    """The codec's C decode function (skips the codec registry per call)."""
    dec = _DECODERS.get(name)
    if dec is None:
        try:
            dec = codecs.lookup(name).decode
        except LookupError:  # pydicom falls back to its default encoding
            dec = codecs.lookup(_LATIN1).decode
        _DECODERS[name] = dec
    return dec


class _Ctx:
    """Per-dataset encoding context (character set, byte order, ...)."""

    __slots__ = (
        "bulk",
        "cache",
        "cid",
        "creators",
        "decoder",
        "encodings",
        "implicit",
        "little",
        "pixel_rep",
    )

    def __init__(
        self,
        cache: JsonEncoderCache,
        encodings: tuple[str, ...],
        little: bool,
        implicit: bool,
        pixel_rep: int,
        bulk: int,
    ) -> None:
        self.cache = cache
        self.encodings = encodings
        self.decoder = _decoder_for(encodings[0])
        self.little = little
        self.implicit = implicit
        self.pixel_rep = pixel_rep
        self.bulk = bulk
        self.cid = cache._ctx_id((encodings, little, implicit, pixel_rep, bulk))
        self.creators: dict[int, str] = {}  # private creator tag -> creator, this dataset


def _as_encodings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else _DEFAULT_ENCODINGS
    if isinstance(value, list | tuple | MultiValue):
        encs = tuple(str(v) for v in value if v)
        return encs or _DEFAULT_ENCODINGS
    return _DEFAULT_ENCODINGS


def _decode_text(value: bytes, ctx: _Ctx) -> str:
    """Decode a text VR value like pydicom's ``decode_bytes``, never raising."""
    if b"\x1b" not in value:  # no ISO 2022 escape sequence: first encoding only
        try:
            return ctx.decoder(value)[0]
        except (UnicodeError, ValueError):
            return ctx.decoder(value, "replace")[0]
    try:
        text = decode_text(value, ctx.encodings)
    except Exception:
        return ctx.decoder(value, "replace")[0]
    if "\x1b$)A" in text:
        # ISO 2022 IR 58 (GB2312): pydicom decodes the fragment with Python's
        # gb2312 codec, which passes the designation ESC $ ) A through as
        # ASCII text; it is not part of the value.
        text = text.replace("\x1b$)A", "")
    return text


# --------------------------------------------------------------------------
# JSON building blocks
# --------------------------------------------------------------------------

_TAG_PREFIX: dict[int, str] = {}


def _prefix(tag: int) -> str:
    """'"TTTTTTTT":' for ``tag`` (memoised, bounded)."""
    prefix = _TAG_PREFIX.get(tag)
    if prefix is None:
        if len(_TAG_PREFIX) >= 100_000:
            _TAG_PREFIX.clear()
        prefix = _TAG_PREFIX[tag] = f'"{tag:08X}":'
    return prefix


def _vr_only(vr: str) -> str:
    return '{"vr":"' + vr + '"}'


def _with_value(vr: str, body: str) -> str:
    return '{"vr":"' + vr + '","Value":[' + body + "]}"


def _strings(vr: str, vals: Iterable[str]) -> str:
    """Value array of strings; empty values are null (PS3.18 F.2.5)."""
    return _with_value(vr, ",".join([_enc(v) if v else "null" for v in vals]))


def _ds_token(tok: str) -> str:
    """JSON for one DS value: the literal, a normalised number, or a string."""
    tok = tok.strip(_STRIP_WS)
    if not tok:
        return "null"
    try:
        num = float(tok)
    except ValueError:
        return _enc(tok)
    if not math.isfinite(num):
        return _enc(tok)
    if _JSON_NUMBER.match(tok):
        return tok
    return repr(num)


def _is_token(tok: str) -> str:
    """JSON for one IS value: an integer, or a string if it is none."""
    tok = tok.strip(_STRIP_WS)
    if not tok:
        return "null"
    try:
        return str(int(tok))
    except ValueError:
        pass
    try:
        num = float(tok)
    except ValueError:
        return _enc(tok)
    if math.isfinite(num) and num.is_integer():
        return str(int(num))
    return _enc(tok)


def _float_token(num: float) -> str:
    if math.isfinite(num):
        return repr(num)
    if math.isnan(num):
        return '"NaN"'
    return '"Infinity"' if num > 0 else '"-Infinity"'


def _pn_json(groups: list[str]) -> str:
    """One PN value from its component groups; null when all are empty."""
    parts = []
    for name, comp in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False):
        if comp:
            parts.append('"' + name + '":' + _enc(comp))
    if not parts:
        return "null"
    return "{" + ",".join(parts) + "}"


def _first_us(elem: object, little: bool) -> int | None:
    """First unsigned 16-bit value of a raw or converted element, if any."""
    try:
        if isinstance(elem, RawDataElement):
            value = elem[RAW_VALUE]
            if value and len(value) >= 2:
                return int(struct.unpack("<H" if little else ">H", value[:2])[0])
            return None
        if isinstance(elem, DataElement):
            v = elem.value
            if isinstance(v, bytes):
                if len(v) >= 2:
                    return int(struct.unpack("<H" if little else ">H", v[:2])[0])
                return None
            if isinstance(v, list | tuple | MultiValue):
                v = v[0] if len(v) else None
            return None if v is None or v == "" else int(v)
    except Exception:
        return None
    return None


# --------------------------------------------------------------------------
# Value handlers for raw (undecoded, non-empty) values, one per VR
# --------------------------------------------------------------------------


def _h_binary(tag: int, vr: str, value: bytes, ctx: _Ctx) -> str:
    if len(value) > ctx.bulk:
        return '{"vr":"' + vr + '"}'
    return '{"vr":"' + vr + '","InlineBinary":"' + _b64(value).decode("ascii") + '"}'


def _h_plain(tag: int, vr: str, value: bytes, ctx: _Ctx) -> str:
    """AS, CS, DA, DT, TM, UI: default repertoire, padding not significant."""
    text = value.decode(_LATIN1)
    if "\\" not in text:
        text = text.strip(_STRIP_PAD)
        return '{"vr":"' + vr + '","Value":[' + _enc(text) + "]}" if text else _vr_only(vr)
    return _strings(vr, [v.strip(_STRIP_PAD) for v in text.split("\\")])


def _h_ae(tag: int, vr: str, value: bytes, ctx: _Ctx) -> str:
    vals = [v.strip(_STRIP_WS) for v in value.decode(_LATIN1).split("\\")]
    if len(vals) == 1 and not vals[0]:
        return _vr_only(vr)
    return _strings(vr, vals)


def _h_sh_lo(tag: int, vr: str, value: bytes, ctx: _Ctx) -> str:
    """SH, LO: character set dependent, leading/trailing spaces not significant."""
    text = _decode_text(value, ctx)
    if "\\" not in text:
        text = text.strip(_STRIP_PAD)
        return '{"vr":"' + vr + '","Value":[' + _enc(text) + "]}" if text else _vr_only(vr)
    return _strings(vr, [v.strip(_STRIP_PAD) for v in text.split("\\")])


def _h_uc(tag: int, vr: str, value: bytes, ctx: _Ctx) -> str:
    vals = [v.rstrip(_STRIP_PAD) for v in _decode_text(value, ctx).split("\\")]
    if len(vals) == 1 and not vals[0]:
        return _vr_only(vr)
    return _strings(vr, vals)


def _h_text(tag: int, vr: str, value: bytes, ctx: _Ctx) -> str:
    """ST, LT, UT: single value (backslash is text), trailing padding only."""
    text = _decode_text(value, ctx).rstrip(_STRIP_PAD)
    return _with_value(vr, _enc(text)) if text else _vr_only(vr)


def _h_ur(tag: int, vr: str, value: bytes, ctx: _Ctx) -> str:
    text = value.decode(_LATIN1).rstrip(_STRIP_WS)
    return _with_value(vr, _enc(text)) if text else _vr_only(vr)


def _h_pn(tag: int, vr: str, value: bytes, ctx: _Ctx) -> str:
    text = _decode_text(value.rstrip(b"\x00 "), ctx)
    if not text:
        return _vr_only(vr)
    items = [_pn_json(v.split("=")) for v in text.split("\\")]
    if len(items) == 1 and items[0] == "null":
        return _vr_only(vr)
    return _with_value(vr, ",".join(items))


def _h_ds(tag: int, vr: str, value: bytes, ctx: _Ctx) -> str:
    text = value.decode(_LATIN1).strip(_STRIP_WS)
    if not text:
        return _vr_only(vr)
    return _with_value(vr, ",".join([_ds_token(t) for t in text.split("\\")]))


def _h_is(tag: int, vr: str, value: bytes, ctx: _Ctx) -> str:
    text = value.decode(_LATIN1).strip(_STRIP_WS)
    if not text:
        return _vr_only(vr)
    return _with_value(vr, ",".join([_is_token(t) for t in text.split("\\")]))


def _unpack(vr: str, value: bytes, little: bool) -> tuple[Any, ...]:
    code, size = _STRUCT[vr]
    count, rest = divmod(len(value), size)
    if rest:
        raise _Unfit(f"{vr} value length {len(value)} is not a multiple of {size}")
    return struct.unpack(("<" if little else ">") + str(count) + code, value)


def _h_int(tag: int, vr: str, value: bytes, ctx: _Ctx) -> str:
    nums = _unpack(vr, value, ctx.little)
    if tag in _LUT_DESCRIPTOR_TAGS and nums[0] < 0:
        nums = (nums[0] + 65536, *nums[1:])
    return _with_value(vr, ",".join(map(str, nums)))


def _h_float(tag: int, vr: str, value: bytes, ctx: _Ctx) -> str:
    return _with_value(vr, ",".join([_float_token(n) for n in _unpack(vr, value, ctx.little)]))


def _h_at(tag: int, vr: str, value: bytes, ctx: _Ctx) -> str:
    count, rest = divmod(len(value), 4)
    if rest:  # pydicom drops a trailing partial tag; we keep every byte (as UN)
        raise _Unfit(f"AT value length {len(value)} is not a multiple of 4")
    fmt = ("<" if ctx.little else ">") + str(2 * count) + "H"
    pairs = struct.unpack(fmt, value[: 4 * count])
    ats = [f'"{pairs[i]:04X}{pairs[i + 1]:04X}"' for i in range(0, len(pairs), 2)]
    return _with_value(vr, ",".join(ats))


_Handler = Callable[[int, str, bytes, _Ctx], str]
_HANDLERS: Final[dict[str, _Handler]] = {
    "AE": _h_ae,
    "AS": _h_plain,
    "AT": _h_at,
    "CS": _h_plain,
    "DA": _h_plain,
    "DS": _h_ds,
    "DT": _h_plain,
    "FD": _h_float,
    "FL": _h_float,
    "IS": _h_is,
    "LO": _h_sh_lo,
    "LT": _h_text,
    "OB": _h_binary,
    "OD": _h_binary,
    "OF": _h_binary,
    "OL": _h_binary,
    "OV": _h_binary,
    "OW": _h_binary,
    "PN": _h_pn,
    "SH": _h_sh_lo,
    "SL": _h_int,
    "SS": _h_int,
    "ST": _h_text,
    "SV": _h_int,
    "TM": _h_plain,
    "UC": _h_uc,
    "UI": _h_plain,
    "UL": _h_int,
    "UN": _h_binary,
    "UR": _h_ur,
    "US": _h_int,
    "UT": _h_text,
    "UV": _h_int,
}
_KNOWN_VRS: Final = frozenset({*_HANDLERS, "SQ"})
_BINARY_VRS: Final = frozenset(vr for vr, h in _HANDLERS.items() if h is _h_binary)


# --------------------------------------------------------------------------
# VR resolution (implicit VR, explicit UN, ambiguous VRs)
# --------------------------------------------------------------------------


def _read_private_creator(ds_dict: Any, creator_tag: int, ctx: _Ctx) -> str:
    elem = ds_dict.get(dict_key(creator_tag))
    if elem is None:
        return ""
    try:
        if isinstance(elem, RawDataElement):
            value = elem[RAW_VALUE]
            return _decode_text(value, ctx).rstrip(_STRIP_PAD) if value else ""
        v = elem.value
        if isinstance(v, list | tuple | MultiValue):
            v = v[0] if len(v) else ""
        return str(v) if v else ""
    except Exception:
        return ""


def _private_vr(ds_dict: Any, tag: int, ctx: _Ctx) -> str:
    """VR of a private element whose VR is unknown (implicit) or UN."""
    element = tag & 0xFFFF
    if 0x0010 <= element <= 0x00FF:
        return "LO"  # private creator
    if not element & 0xFF00:
        return "UN"
    creator_tag = (tag & 0xFFFF0000) | (element >> 8)
    creator = ctx.creators.get(creator_tag)
    if creator is None:
        creator = ctx.creators[creator_tag] = _read_private_creator(ds_dict, creator_tag, ctx)
    if not creator:
        return "UN"
    memo = ctx.cache._private_vrs
    vr = memo.get((tag, creator))
    if vr is None:
        try:
            vr = str(private_dictionary_VR(tag, creator))
        except Exception:
            vr = "UN"
        memo[(tag, creator)] = vr
    return vr


def _resolve_vr(tag: int, vr: str | None, length: int, ds_dict: Any, ctx: _Ctx) -> tuple[str, bool]:
    """Return the VR to encode with, and whether the result may be cached."""
    cacheable = True
    if vr is None:  # implicit VR: dictionary lookup like pydicom
        try:
            vr = str(dictionary_VR(tag))
        except Exception:
            if tag & 0x00010000:
                vr = _private_vr(ds_dict, tag, ctx)
            elif not tag & 0xFFFF:
                vr = "UL"
            else:
                vr = "UN"
    elif vr == "UN" and replace_un_with_known_vr():
        if tag & 0x00010000:
            vr = _private_vr(ds_dict, tag, ctx)
        elif length < 0xFFFF:
            try:
                vr = str(dictionary_VR(tag))
            except Exception:
                vr = "UN"
    if vr not in _KNOWN_VRS:  # ambiguous ("US or SS", ...) or invalid
        if vr == "US or SS":
            vr = "SS" if ctx.pixel_rep == 1 else "US"
        elif vr == "US or OW":  # LUT Data: US iff the LUT has a single entry
            cacheable = False
            first = _first_us(ds_dict.get(_BT_LUT_DESCRIPTOR), ctx.little)
            vr = "US" if first == 1 else "OW"
        elif vr in ("OB or OW", "US or SS or OW"):
            vr = "OW"
        else:
            raise _Unfit(f"unknown VR {vr!r}")
    return vr, cacheable


# --------------------------------------------------------------------------
# Failures: faithful UN for bytes that do not fit their VR, DicomJsonError otherwise
# --------------------------------------------------------------------------


class _Unfit(ValueError):
    """The element's bytes do not fit its VR (unknown VR, wrong length, malformed
    sequence): encoded faithfully as UN with those bytes, never an error."""


class _EncodeFailure(Exception):
    """An element cannot be encoded. ``args[0]`` is the cause; ``path`` collects the
    element tags and item numbers on the way out (innermost first). Built without
    Python-level calls so that it can be raised even at the recursion limit."""

    path: list[str]


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _path_text(path: list[str]) -> str:
    """'(0040,A730) > item 0 > (0040,A160)' from an innermost-first path."""
    parts = path[::-1]
    if len(parts) > 9:
        parts = [*parts[:4], f"... {len(parts) - 8} more ...", *parts[-4:]]
    return " > ".join(parts)


def _unfit_bytes(tag: int, elem: Any, ds: Dataset, ctx: _Ctx) -> str:
    """UN body for an element whose bytes do not fit its VR (raises when no bytes)."""
    if type(elem) is RawDataElement:
        value = elem[RAW_VALUE]
        if value is None and elem[RAW_LENGTH]:
            value = ds[tag].value  # deferred read: let pydicom load it
    else:
        value = getattr(elem, "value", None)
    if value is None or isinstance(value, bytes | bytearray):
        return _h_binary(tag, "UN", bytes(value), ctx) if value else _vr_only("UN")
    raise TypeError(
        f"{getattr(elem, 'VR', None)!r} value of type {type(value).__name__} does not fit "
        "its VR and is not bytes"
    )


# --------------------------------------------------------------------------
# Element encoders
# --------------------------------------------------------------------------


def _encode_raw(
    tag: int, raw: RawDataElement, ds: Dataset, ds_dict: Any, ctx: _Ctx
) -> tuple[str, bool]:
    """JSON object for one raw element, and whether it may be cached."""
    length = raw[RAW_LENGTH]
    vr, cacheable = _resolve_vr(tag, raw[RAW_VR], length, ds_dict, ctx)
    value = raw[RAW_VALUE]
    if tag in _BULK_TAGS or (tag & 0xFFE1FFFF) == 0x60003000:
        return _vr_only(vr), cacheable
    if value is None:
        if not length:
            return _vr_only(vr), cacheable
        # Deferred read (dcmread(defer_size=...)): never load bulk values.
        if vr in _BINARY_VRS and length > ctx.bulk:
            return _vr_only(vr), False
        return _encode_element(tag, ds[tag], ctx), False
    if not value:
        return _vr_only(vr), cacheable
    if vr == "SQ":
        little = raw[RAW_IS_LITTLE_ENDIAN]
        if not value.startswith(_ITEM_TAG_LE if little else _ITEM_TAG_BE):
            # pydicom would read the bytes as an item anyway and make one up
            raise _Unfit("sequence bytes do not start with an item")
        try:
            seq = convert_sq(
                value,
                raw[RAW_IS_IMPLICIT_VR],
                little,
                list(ctx.encodings),
                raw[RAW_VALUE_TELL],
            )
        except (RecursionError, MemoryError):
            raise
        except Exception as exc:  # the bytes are no sequence
            raise _Unfit(f"malformed sequence: {exc}") from exc
        return _encode_sequence(seq, ctx), cacheable
    return _HANDLERS[vr](tag, vr, value, ctx), cacheable


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str | bytes | PersonName):
        return [value]
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        out = tolist()
        return out if isinstance(out, list) else [out]
    return [value]


def _wrong_type(vr: str, v: object, expected: str) -> TypeError:
    return TypeError(f"{vr} value of type {type(v).__name__} is not {expected}")


_DATETIME_VRS: Final[dict[str, Callable[[Any], Any]]] = {"DA": DA, "DT": DT, "TM": TM}
_NUMBER_VALUE_TYPES: Final = (str, numbers.Number, decimal.Decimal)  # DS / IS


def _string_value(vr: str, v: object) -> str:
    """One value of a string VR: a str, or for DA/DT/TM a date/time written the way
    pydicom writes it."""
    if isinstance(v, str):
        return v
    if vr in _DATETIME_VRS and isinstance(v, datetime.date | datetime.time):
        original = getattr(v, "original_string", None)
        return original if isinstance(original, str) else str(_DATETIME_VRS[vr](v))
    raise _wrong_type(vr, v, "text")


def _encode_element(tag: int, elem: DataElement, ctx: _Ctx) -> str:
    """Encode an already converted ``DataElement``; raises for values its VR cannot hold."""
    vr = str(elem.VR) if elem.VR else "UN"
    value = elem.value
    if vr == "SQ":
        return _encode_sequence(value, ctx)
    if vr not in _KNOWN_VRS:
        if vr == "US or SS":
            vr = "SS" if ctx.pixel_rep == 1 else "US"
        elif vr == "US or OW":
            vr = "OW" if isinstance(value, bytes | bytearray) else "US"
        elif vr in ("OB or OW", "US or SS or OW"):
            vr = "OW"
        else:
            raise _Unfit(f"unknown VR {vr!r}")
    if tag in _BULK_TAGS or (tag & 0xFFE1FFFF) == 0x60003000:
        return _vr_only(vr)
    if value is None or (isinstance(value, str | bytes | list | tuple | MultiValue) and not value):
        return _vr_only(vr)
    if isinstance(value, PersonName) and not str(value):
        return _vr_only(vr)
    if isinstance(value, bytes | bytearray):
        # Still the raw bytes (e.g. "US or SS" values, or set as bytes): like a raw element.
        return _HANDLERS[vr](tag, vr, bytes(value), ctx)
    if vr in _BINARY_VRS:
        raise _wrong_type(vr, value, "bytes")
    vals = _as_list(value)
    if vr == "PN":
        items = []
        for v in vals:
            if v is None or v == "":
                items.append("null")
            elif isinstance(v, PersonName):
                items.append(_pn_json(list(v.components)))
            elif isinstance(v, str):
                items.append(_pn_json(v.split("=")))
            else:
                raise _wrong_type(vr, v, "a person name")
        if len(items) == 1 and items[0] == "null":
            return _vr_only(vr)
        return _with_value(vr, ",".join(items))
    if vr == "AT":
        return _with_value(vr, ",".join([f'"{operator.index(v):08X}"' for v in vals]))
    if vr in ("DS", "IS"):
        token = _ds_token if vr == "DS" else _is_token
        out = []
        for v in vals:
            if v is None or v == "":
                out.append("null")
            elif not isinstance(v, _NUMBER_VALUE_TYPES):
                raise _wrong_type(vr, v, "a number")
            elif vr == "DS" and isinstance(v, float) and not hasattr(v, "original_string"):
                out.append(_float_token(v))
            else:
                orig = getattr(v, "original_string", None)
                out.append(token(orig if isinstance(orig, str) else str(v)))
        return _with_value(vr, ",".join(out))
    if vr in _STRUCT:
        if vr in ("FL", "FD"):
            nums = []
            for v in vals:
                if v is None or v == "":
                    nums.append("null")
                elif isinstance(v, numbers.Real):
                    nums.append(_float_token(float(v)))
                else:
                    raise _wrong_type(vr, v, "a number")
        else:  # operator.index: ints (numpy ints too), never floats or strings
            nums = ["null" if v is None or v == "" else str(operator.index(v)) for v in vals]
        return _with_value(vr, ",".join(nums))
    strs = ["" if v is None else _string_value(vr, v) for v in vals]
    if vr in ("UC", "ST", "LT", "UT"):
        strs = [s.rstrip(_STRIP_PAD) for s in strs]
    elif vr in ("AE", "UR"):
        strs = [s.strip(_STRIP_WS) for s in strs]
    else:
        strs = [s.strip(_STRIP_PAD) for s in strs]
    if len(strs) == 1 and not strs[0]:
        return _vr_only(vr)
    return _strings(vr, strs)


# --------------------------------------------------------------------------
# Datasets and sequences
# --------------------------------------------------------------------------


def _dataset_ctx(ds: Dataset, parent: _Ctx | None, cache: JsonEncoderCache, bulk: int) -> _Ctx:
    ds_dict = elements(ds)
    # Character set: as recorded by pydicom while reading (the item's own
    # (0008,0005) or the one inherited from its parent), else the dataset's
    # own Specific Character Set, else the parent's.
    encodings: tuple[str, ...] | None = None
    read_cs = ds.original_character_set
    if read_cs:
        encodings = _as_encodings(read_cs)
    else:
        cs_elem = ds_dict.get(_BT_CHARSET)
        if cs_elem is not None:
            try:
                if isinstance(cs_elem, RawDataElement):
                    raw_cs = (cs_elem[RAW_VALUE] or b"").decode(_LATIN1)
                    cs_values: Any = [v.strip(_STRIP_PAD) for v in raw_cs.split("\\")]
                else:
                    cs_values = cs_elem.value
                encodings = _as_encodings(convert_encodings(cs_values))
            except Exception:  # like pydicom: an unusable charset reads as the default
                encodings = None
        if encodings is None:
            encodings = parent.encodings if parent is not None else _DEFAULT_ENCODINGS

    implicit, little = ds.original_encoding
    if little is None or implicit is None:
        first = next(iter(ds_dict.values()), None)
        if isinstance(first, RawDataElement):
            implicit, little = first[RAW_IS_IMPLICIT_VR], first[RAW_IS_LITTLE_ENDIAN]
        elif parent is not None:
            implicit, little = parent.implicit, parent.little
        else:
            implicit, little = False, True

    # Closest Pixel Representation, for "US or SS" elements.
    pixel_rep = parent.pixel_rep if parent is not None else 0
    pr_elem = ds_dict.get(_BT_PIXEL_REPRESENTATION)
    if pr_elem is not None:
        pr = _first_us(pr_elem, bool(little))
        if pr is not None:
            pixel_rep = pr
    return _Ctx(cache, encodings, bool(little), bool(implicit), pixel_rep, bulk)


def _encode_sequence(items: Any, ctx: _Ctx) -> str:
    if not items:
        return _vr_only("SQ")
    parts = []
    for i, item in enumerate(items):
        try:
            if not isinstance(item, Dataset):
                raise TypeError(f"sequence item of type {type(item).__name__} is not a dataset")
            parts.append(_encode_dataset(item, ctx, ctx.cache, ctx.bulk))
        except _EncodeFailure as failure:
            failure.path.append(f"item {i}")
            raise
        except Exception as exc:
            fresh = _EncodeFailure(exc)
            fresh.path = [f"item {i}"]
            raise fresh from exc
    return '{"vr":"SQ","Value":[' + ",".join(parts) + "]}"


def _encode_miss(
    tag: int, elem: Any, key: _Key | None, ds: Dataset, ds_dict: Any, ctx: _Ctx
) -> str:
    """Encode an element that was not found in the cache.

    Bytes that do not fit the VR become UN (:class:`_Unfit`); anything else that fails
    raises :class:`_EncodeFailure` naming this element.
    """
    cache = ctx.cache
    cache.misses += 1
    if not tag & 0xFFFF:
        # Group length: not part of the DICOM JSON model (F.2.2). The empty
        # fragment is memoised and filtered out of the joined result.
        if key is not None:
            cache._store(key, "")
        return ""
    try:
        try:
            if type(elem) is RawDataElement:
                # Common case inline: explicit, non-ambiguous VR with a value.
                vr = elem[RAW_VR]
                value = elem[RAW_VALUE]
                handler = _HANDLERS.get(vr) if value and vr and vr != "UN" else None
                if handler is not None and tag not in _BULK_TAGS and tag & 0xFFE1FFFF != 0x60003000:
                    frag = _prefix(tag) + handler(tag, vr, value, ctx)  # type: ignore[arg-type]
                    if key is not None and tag not in _PER_INSTANCE_TAGS:
                        cache._store(key, frag)
                    return frag
                body, cacheable = _encode_raw(tag, elem, ds, ds_dict, ctx)
            else:
                body, cacheable = _encode_element(tag, elem, ctx), True
        except _Unfit:
            return _prefix(tag) + _unfit_bytes(tag, elem, ds, ctx)
    except _EncodeFailure as failure:
        failure.path.append(_tag_text(tag))
        raise
    except Exception as exc:
        fresh = _EncodeFailure(exc)
        fresh.path = [f"({tag >> 16:04X},{tag & 0xFFFF:04X})"]
        raise fresh from exc
    frag = _prefix(tag) + body
    if key is not None and cacheable and tag not in _PER_INSTANCE_TAGS:
        cache._store(key, frag)
    return frag


_RAW_TYPE: Final = itertools.repeat(RawDataElement)
_NONE: Final = itertools.repeat(None)
_PRIVATE_BIT: Final = itertools.repeat(0x00010000)
_get_vr: Final = raw_vr
_get_length: Final = raw_length
_get_value: Final = raw_value
# Stands in for converted elements while the keys are built in bulk.
_KEY_STAND_IN: Final = new_raw_element(0, None, 0, None, 0, False, True)
_SIMPLE_TYPES: Final = (str, int, float)


def _cache_keys(tags: list[int], elems: list[Any], ds_dict: Any, ctx: _Ctx) -> list[_Key | None]:
    """One cache key per element (None: do not look up, do not store).

    Built with C-level ``map``/``zip`` over the whole dataset; only the rare
    elements needing attention are visited in Python.
    """
    n = len(tags)
    cid = ctx.cid
    indices = range(n)
    originals = elems
    types = list(map(type, elems))
    converted: list[int] = []
    if types.count(RawDataElement) != n:
        # DataElement also supports [] (delegating to its value): swap in a
        # stand-in and key converted elements separately below.
        converted = list(itertools.compress(indices, map(operator.is_not, types, _RAW_TYPE)))
        elems = elems.copy()
        for i in converted:
            elems[i] = _KEY_STAND_IN
    vrs = list(map(_get_vr, elems))
    values = list(map(_get_value, elems))
    keys: list[_Key | None] = list(zip(tags, vrs, values, itertools.repeat(cid)))
    if None in values:
        # None is an empty value (length 0: cacheable) or a deferred one
        # (dcmread(defer_size=...)), which must never be a key.
        for i in itertools.compress(indices, map(operator.is_, values, _NONE)):
            if elems[i][RAW_LENGTH]:
                keys[i] = None
    max_value = ctx.cache.max_value_bytes
    if max(map(_get_length, elems)) > max_value:
        for i in indices:
            value = values[i]
            if value is not None and len(value) > max_value:
                keys[i] = None  # not worth hashing, never stored
    if None in vrs or "UN" in vrs:
        # Private elements without a VR: the VR (and so the encoding) depends
        # on the private creator, so key them by the resolved VR.
        for i in itertools.compress(indices, map(operator.and_, tags, _PRIVATE_BIT)):
            vr = vrs[i]
            if (vr is None or vr == "UN") and keys[i] is not None:
                keys[i] = (tags[i], _private_vr(ds_dict, tags[i], ctx), values[i], cid)
    for i in converted:
        # Converted elements with a plain str/int/float value are memoised
        # too ("=" keeps their keys apart from raw ones); others are not.
        elem = originals[i]
        keys[i] = None
        if type(elem) is DataElement:
            value = elem.value
            if type(value) in _SIMPLE_TYPES:
                keys[i] = (tags[i], "=" + str(elem.VR), value, cid)
    return keys


def _encode_dataset(ds: Dataset, parent: _Ctx | None, cache: JsonEncoderCache, bulk: int) -> str:
    ds_dict = elements(ds)
    if not ds_dict:
        return "{}"  # an empty dataset (item), not a placeholder
    ctx = _dataset_ctx(ds, parent, cache, bulk)
    # BaseTag compares and converts in Python code: get plain ints in C.
    tags = element_tags(ds_dict)
    elems: list[Any] = list(ds_dict.values())
    if tags != sorted(tags):
        order = sorted(range(len(tags)), key=tags.__getitem__)
        tags = [tags[i] for i in order]
        elems = [elems[i] for i in order]
    keys: list[_Key | None]
    try:
        keys = _cache_keys(tags, elems, ds_dict, ctx)
    except Exception:
        keys = [None] * len(tags)
    frags_get: Callable[[Any], str | None] = cache._frags.get
    frags: list[str | None] = list(map(frags_get, keys))
    cache.lookups += len(keys)
    if None in frags:
        for i in itertools.compress(range(len(frags)), map(operator.is_, frags, _NONE)):
            frags[i] = _encode_miss(tags[i], elems[i], keys[i], ds, ds_dict, ctx)
    return "{" + ",".join(filter(None, frags)) + "}"


def dataset_to_json(
    ds: Dataset,
    *,
    cache: JsonEncoderCache | None = None,
    bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
) -> str:
    """Return ``ds`` as a compact DICOM JSON (PS3.18 F.2) object string.

    ``ds`` is typically the result of ``pydicom.dcmread(fp,
    stop_before_pixels=True)``. Its raw elements are encoded from their bytes
    without being converted, so ``ds`` is not modified (deferred values,
    from ``dcmread(defer_size=...)``, are loaded by pydicom unless they are
    bulk data). ``ds.file_meta`` is not included. Fragments are memoised in
    ``cache`` (default: the module-level :func:`default_cache`). Binary values
    (OB/OD/OF/OL/OV/OW/UN) longer than ``bulk_threshold`` bytes, and pixel,
    overlay and waveform data of any size, are emitted with ``"vr"`` only.
    Bytes that do not fit their VR become ``UN`` with those bytes; an element
    that cannot be encoded at all raises :class:`DicomJsonError` (never a
    placeholder). The module docstring has the rules.

    Deliberate differences from ``ds.to_json_dict(bulk_data_threshold=T,
    bulk_data_element_handler=lambda el: None)``:

    * Bulk elements have ``"vr"`` only instead of ``"BulkDataURI": null``.
      ``bulk_threshold`` counts raw bytes, whereas pydicom compares the raw
      length with ``T // 4 * 3`` (768 raw bytes for ``T=1024``). Pixel,
      overlay and waveform data are bulk whatever their size.
    * Group length elements (gggg,0000) are omitted (F.2.2).
    * Empty values inside a multi-valued element are ``null`` (F.2.5), not
      ``""``; a sequence without items has no ``"Value"`` (pydicom: ``[]``).
    * PN objects hold only non-empty component groups (F.2.2); pydicom may
      emit ``"Alphabetic": ""`` (for ``"=Yamada"``) or fail on empty values.
    * Padding is stripped from each value, not only from the end of the
      element, for AE/AS/CS/DA/DT/TM/UI, and leading spaces from SH/LO too.
    * DS keeps its literal when it is a valid JSON number (pydicom: a float,
      so ``"1"`` becomes ``1.0``); the numbers are equal.
    * Values pydicom cannot serialise (unparseable IS/DS, NaN or infinity in
      FL/FD, numeric or AT values of a wrong length, unknown VRs) become
      strings or ``UN`` InlineBinary instead of raising or producing invalid
      JSON; pydicom drops a trailing partial AT tag, we keep its bytes as UN.
    * Ambiguous VRs pydicom leaves unresolved (``OB or OW`` for e.g. Air
      Counts, ``US or SS or OW``) are emitted as OW.
    * ISO 2022 IR 58 (GB2312) text: the designation escape ``ESC $ ) A``,
      which pydicom leaves in the decoded string, is removed.

    Example:
        >>> from pydicom.dataset import Dataset
        >>> ds = Dataset()
        >>> ds.PatientName = "Yamada^Tarou=山田^太郎"
        >>> ds.ImageType = ["ORIGINAL", "PRIMARY"]
        >>> ds.SliceThickness = "2.50"
        >>> ds.Rows = 512
        >>> dataset_to_json(ds, cache=JsonEncoderCache())
        '{"00080008":{"vr":"CS","Value":["ORIGINAL","PRIMARY"]},"00100010":{"vr":"PN","Value":[{"Alphabetic":"Yamada^Tarou","Ideographic":"山田^太郎"}]},"00180050":{"vr":"DS","Value":[2.50]},"00280010":{"vr":"US","Value":[512]}}'
    """
    if cache is None:
        cache = _default_cache
    bulk = operator.index(bulk_threshold)
    try:
        return _encode_dataset(ds, None, cache, bulk)
    except _EncodeFailure as failure:
        cause = failure.args[0]
        reason = f"{type(cause).__name__}: {cause}"
        if isinstance(cause, RecursionError):
            reason += " (sequences nested too deeply)"
        raise DicomJsonError(
            f"cannot encode element {_path_text(failure.path)}: {reason}"
        ) from cause
    except Exception as exc:  # outside any element: the dataset itself is unusable
        raise DicomJsonError(f"cannot encode dataset: {type(exc).__name__}: {exc}") from exc
