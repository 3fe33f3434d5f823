"""Header attributes as typed Python values, read from the raw element bytes of one parse.

:func:`read_attributes` turns a dataset read by :func:`~iac_spark.dicom.header.parse_header`
into the values of the ``Header`` fields: the identifiers of the zipdcm contract and the
attributes the catalog promotes (:data:`PROMOTED`). Values are decoded from the raw bytes
(no pydicom ``DataElement`` conversion, the dataset is not modified), ASCII directly and
anything else (including ISO 2022 escape sequences, which are ASCII bytes) the way
pydicom's reader decodes it: SH/LO text through the dataset's Specific Character Set
(``compat.decode_text``), CS/AS/DA/UI in the default repertoire.

Rules, one per kind of value; none of them raises:

* text: the first value, leading/trailing spaces and NULs removed; ``None`` when empty.
* integer (IS, US/SS/UL/SL): the first value; an IS must be an integer (``"1.0"`` is 1,
  ``"1.5"`` is invalid); ``None`` outside the 32-bit signed range (Spark ``int``).
* number (DS, FL/FD): the first value as a finite float; a DS token must be a decimal
  number (``"1,5"``, ``"1_0"``, ``NaN``, ``inf`` are invalid).
* numbers: every value, each as for *number*; ``None`` if any one is empty or invalid
  (the value multiplicity is not checked: pydicom does not check it either).
* strings (image_type): every value, padding removed, empty values kept as ``""`` so that
  positions keep their meaning; ``None`` when all are empty.
* date (DA): ``YYYYMMDD`` (or the ACR-NEMA ``YYYY.MM.DD`` that pydicom also accepts) as a
  ``datetime.date``; ``None`` when not a real date.

An implicit-VR element, or one stored as UN, is read with the attribute's dictionary VR
(as pydicom does with ``replace_un_with_known_vr``); an element whose stored VR does not
suit the attribute at all (e.g. Rows stored as OB) is ``None``.

Example:
    >>> import pydicom
    >>> from pydicom.data import get_testdata_file
    >>> ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    >>> a = read_attributes(ds)
    >>> a["study_date"], a["pixel_spacing"], a["image_type"], a["rows"]
    (datetime.date(2004, 1, 19), (0.661468, 0.661468), ('ORIGINAL', 'PRIMARY', 'AXIAL'), 128)
"""

from __future__ import annotations

import datetime
import math
import struct
from collections.abc import Callable
from typing import Any, Final

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import DA

from .compat import (
    DEFAULT_ENCODING,
    RAW_IS_LITTLE_ENDIAN,
    RAW_VALUE,
    RAW_VR,
    RawDataElement,
    decode_text,
    dict_key,
    elements,
)

__all__ = ["CORE", "PROMOTED", "read_attributes"]

PROMOTED: Final[tuple[str, ...]] = (
    "study_date",
    "series_number",
    "study_description",
    "series_description",
    "body_part_examined",
    "patient_sex",
    "patient_age",
    "manufacturer",
    "manufacturer_model_name",
    "slice_thickness",
    "spacing_between_slices",
    "pixel_spacing",
    "image_position_patient",
    "image_orientation_patient",
    "bits_allocated",
    "photometric_interpretation",
    "image_type",
)
"""Header fields promoted to catalog columns (beyond the zipdcm contract columns)."""

CORE: Final[tuple[str, ...]] = (
    "sop_instance_uid",
    "series_instance_uid",
    "study_instance_uid",
    "patient_id",
    "modality",
    "sop_class_uid",
    "instance_number",
    "rows",
    "columns",
    "number_of_frames",
)
"""Header fields of the zipdcm contract that come from dataset elements."""

_PAD: Final = " \x00"
_WS: Final = " \x00\t\r\n\f\v"
_CHARSET_VRS: Final = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
_INT_FORMATS: Final = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "UV": "Q", "SV": "q"}
_FLOAT_FORMATS: Final = {"FL": "f", "FD": "d"}
_NUMERIC_BINARY: Final = frozenset({*_INT_FORMATS, *_FLOAT_FORMATS})
# VRs whose bytes are not text: binary, sequences, tags and the numeric binary VRs.
_NOT_TEXT: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "AT", *_NUMERIC_BINARY})
_INT32: Final = range(-(2**31), 2**31)


def _decode(value: bytes, vr: str, ds: Dataset) -> str:
    """One value's bytes as text, as pydicom's reader decodes the VR. Plain ASCII is
    decoded directly; ISO 2022 escape sequences (ASCII bytes too) need pydicom."""
    if value.isascii() and b"\x1b" not in value:
        return value.decode("ascii")
    if vr in _CHARSET_VRS:
        return decode_text(value, _encodings(ds))
    return value.decode("latin-1")


def _encodings(ds: Dataset) -> list[str]:
    """The Python codecs of the dataset's Specific Character Set, as pydicom read them."""
    charset = ds.original_character_set
    if isinstance(charset, str):
        return [charset] if charset else [DEFAULT_ENCODING]
    return [str(c) for c in charset if c] or [DEFAULT_ENCODING]


def _first(value: Any) -> Any:
    if isinstance(value, list | tuple | MultiValue):
        return value[0] if len(value) else None
    return value


def _values(value: Any) -> list[Any]:
    if isinstance(value, list | tuple | MultiValue):
        return list(value)
    return [value]


def _unpack(vr: str, value: bytes, little: bool) -> tuple[Any, ...] | None:
    code = _INT_FORMATS.get(vr) or _FLOAT_FORMATS[vr]
    size = struct.calcsize(code)
    count, rest = divmod(len(value), size)
    if rest or not count:
        return None
    return struct.unpack(("<" if little else ">") + str(count) + code, value)


# --------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------


def _int_token(text: str) -> int | None:
    """An IS token: an integer, or a float literal with an integral value (``"1.0"``)."""
    # int()/float() also read "_" digit separators and non-ASCII digits; DICOM does not.
    if not text.isascii() or "_" in text:
        return None
    try:
        return int(text)  # surrounding whitespace is ignored by int()
    except ValueError:
        pass
    try:
        num = float(text.strip(_WS))
    except ValueError:
        return None
    return int(num) if math.isfinite(num) and num.is_integer() else None


def _float_token(text: str) -> float | None:
    """A DS token as a finite float (``NaN``, ``inf``, ``1_0``, ``1,5`` are invalid)."""
    if not text.isascii() or "_" in text:
        return None
    try:
        num = float(text.strip(_WS))
    except ValueError:
        return None
    return num if math.isfinite(num) else None


def _int_value(v: Any) -> int | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return int(v) if math.isfinite(v) and v.is_integer() else None
    if isinstance(v, str):
        return _int_token(v)
    return None


def _float_value(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        num = float(v)
        return num if math.isfinite(num) else None
    if isinstance(v, str):
        return _float_token(v)
    return None


# --------------------------------------------------------------------------
# Kinds: raw bytes (non-empty, with the VR to read them by) -> typed value
# --------------------------------------------------------------------------


def _text(vr: str, value: bytes, little: bool, ds: Dataset) -> str | None:
    if vr in _NOT_TEXT:
        return None
    first = value.split(b"\\", 1)[0]
    if first.isascii() and b"\x1b" not in first:
        return first.decode("ascii").strip(_PAD) or None
    return _decode(first, vr, ds).strip(_PAD) or None


def _strings(vr: str, value: bytes, little: bool, ds: Dataset) -> tuple[str, ...] | None:
    if vr in _NOT_TEXT:
        return None
    if value.isascii() and b"\x1b" not in value:
        vals = tuple([v.strip(_PAD) for v in value.decode("ascii").split("\\")])
    else:
        vals = tuple([_decode(v, vr, ds).strip(_PAD) for v in value.split(b"\\")])
    return vals if any(vals) else None


def _integer(vr: str, value: bytes, little: bool, ds: Dataset) -> int | None:
    if vr in _NUMERIC_BINARY:
        nums = _unpack(vr, value, little)
        num = _int_value(nums[0]) if nums else None
    elif vr in _NOT_TEXT:
        return None
    else:
        num = _int_token(value.split(b"\\", 1)[0].decode("latin-1"))
    return num if num is not None and num in _INT32 else None


def _number(vr: str, value: bytes, little: bool, ds: Dataset) -> float | None:
    if vr in _NUMERIC_BINARY:
        nums = _unpack(vr, value, little)
        return _float_value(nums[0]) if nums else None
    if vr in _NOT_TEXT:
        return None
    return _float_token(value.split(b"\\", 1)[0].decode("latin-1"))


def _numbers(vr: str, value: bytes, little: bool, ds: Dataset) -> tuple[float, ...] | None:
    if vr in _NUMERIC_BINARY:
        unpacked = _unpack(vr, value, little)
        if not unpacked:
            return None
        nums = tuple([float(v) for v in unpacked])
    elif vr in _NOT_TEXT:
        return None
    else:
        text = value.decode("latin-1")
        if not text.isascii() or "_" in text:
            return None
        try:
            nums = tuple([float(t.strip(_WS)) for t in text.split("\\")])
        except ValueError:  # an empty or unreadable value
            return None
    return nums if all(map(math.isfinite, nums)) else None


def _date_text(text: str) -> datetime.date | None:
    text = text.strip(_WS)
    if not text:
        return None
    try:
        if len(text) == 8 and text.isdigit():
            return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        parsed = DA(text)  # the ACR-NEMA form YYYY.MM.DD; anything else raises
    except (ValueError, TypeError, OverflowError):
        return None
    return datetime.date(parsed.year, parsed.month, parsed.day) if parsed is not None else None


def _date(vr: str, value: bytes, little: bool, ds: Dataset) -> datetime.date | None:
    if vr in _NOT_TEXT:
        return None
    return _date_text(value.split(b"\\", 1)[0].decode("latin-1"))


# Converted values (a DataElement's .value): same kinds, from Python objects.


def _converted(kind: _Kind, value: Any) -> Any:
    if kind is _text:
        v = _first(value)
        return (str(v).strip(_PAD) or None) if v is not None else None
    if kind is _strings:
        vals = tuple("" if v is None else str(v).strip(_PAD) for v in _values(value))
        return vals if any(vals) else None
    if kind is _integer:
        num = _int_value(_first(value))
        return num if num is not None and num in _INT32 else None
    if kind is _number:
        return _float_value(_first(value))
    if kind is _numbers:
        nums = [_float_value(v) for v in _values(value)]
        return None if not nums or None in nums else tuple(nums)
    v = _first(value)  # _date
    if isinstance(v, datetime.date):
        return datetime.date(v.year, v.month, v.day)
    return _date_text(str(v)) if v is not None else None


_Kind = Callable[[str, bytes, bool, Dataset], Any]

# field name, tag, dictionary VR, kind
_SPEC: Final[tuple[tuple[str, int, str, _Kind], ...]] = (
    ("sop_instance_uid", 0x00080018, "UI", _text),
    ("series_instance_uid", 0x0020000E, "UI", _text),
    ("study_instance_uid", 0x0020000D, "UI", _text),
    ("patient_id", 0x00100020, "LO", _text),
    ("modality", 0x00080060, "CS", _text),
    ("sop_class_uid", 0x00080016, "UI", _text),
    ("instance_number", 0x00200013, "IS", _integer),
    ("rows", 0x00280010, "US", _integer),
    ("columns", 0x00280011, "US", _integer),
    ("number_of_frames", 0x00280008, "IS", _integer),
    ("study_date", 0x00080020, "DA", _date),
    ("series_number", 0x00200011, "IS", _integer),
    ("study_description", 0x00081030, "LO", _text),
    ("series_description", 0x0008103E, "LO", _text),
    ("body_part_examined", 0x00180015, "CS", _text),
    ("patient_sex", 0x00100040, "CS", _text),
    ("patient_age", 0x00101010, "AS", _text),
    ("manufacturer", 0x00080070, "LO", _text),
    ("manufacturer_model_name", 0x00081090, "LO", _text),
    ("slice_thickness", 0x00180050, "DS", _number),
    ("spacing_between_slices", 0x00180088, "DS", _number),
    ("pixel_spacing", 0x00280030, "DS", _numbers),
    ("image_position_patient", 0x00200032, "DS", _numbers),
    ("image_orientation_patient", 0x00200037, "DS", _numbers),
    ("bits_allocated", 0x00280100, "US", _integer),
    ("photometric_interpretation", 0x00280004, "CS", _text),
    ("image_type", 0x00080008, "CS", _strings),
)
assert tuple(name for name, *_ in _SPEC) == CORE + PROMOTED
_NAMES: Final = CORE + PROMOTED
_LOOKUP_KEYS: Final = tuple(dict_key(tag) for _, tag, _, _ in _SPEC)
_CORE_SPEC: Final = _SPEC[: len(CORE)]  # a zipdcm scan needs only these (a third of the cost)
_CORE_KEYS: Final = _LOOKUP_KEYS[: len(CORE)]


def _slow(ds: Dataset, tag: int, elem: Any, vr: str, kind: _Kind) -> Any:
    """A deferred raw element (loaded by pydicom) or a converted one."""
    if type(elem) is RawDataElement:
        elem = ds[tag]  # deferred read (dcmread(defer_size=...)): let pydicom load it
    value = elem.value
    if value is None or value == "":
        return None
    if isinstance(value, bytes | bytearray):
        stored = str(elem.VR) if elem.VR else "UN"
        return kind(vr if stored == "UN" else stored, bytes(value), True, ds)
    return _converted(kind, value)


def read_attributes(ds: Dataset, *, promoted: bool = True) -> dict[str, Any]:
    """The :data:`CORE` and (with ``promoted``) :data:`PROMOTED` fields of ``ds`` (``None``
    where absent or invalid; promoted fields ``None`` without ``promoted``). Never raises for
    odd element values; does not convert elements of ``ds``."""
    spec, keys = (_SPEC, _LOOKUP_KEYS) if promoted else (_CORE_SPEC, _CORE_KEYS)
    found = list(map(elements(ds).get, keys))
    out: dict[str, Any] = dict.fromkeys(_NAMES)
    for (name, tag, vr, kind), elem in zip(spec, found, strict=True):
        if elem is None:
            continue
        try:
            if type(elem) is RawDataElement and elem[RAW_VALUE] is not None:
                value = elem[RAW_VALUE]
                if value:
                    stored = elem[RAW_VR]
                    if stored is not None and stored != "UN":
                        vr = stored
                    out[name] = kind(vr, value, elem[RAW_IS_LITTLE_ENDIAN], ds)
            else:
                out[name] = _slow(ds, tag, elem, vr, kind)
        except Exception:  # an odd value is a null column, never a failed member
            out[name] = None
    return out
