"""The one door to pydicom internals: every private name the codec relies on, and nothing else.

Speed needs a few things pydicom does not promise: the element storage ``Dataset._dict``
(reading it does not convert elements), the field layout of the ``RawDataElement`` named
tuple, ``read_dataset`` with the private ``_at_pixel_data`` stop condition, the charset
helpers, ``convert_SQ``, ``TEXT_VR_DELIMS``, the ``BaseTag`` keys of ``_dict`` and the
``pydicom.config`` switch ``replace_un_with_known_vr``. :mod:`iac_spark.dicom.header`,
:mod:`iac_spark.dicom.attributes` and :mod:`iac_spark.dicom.dicom_json` import them from
here only; public pydicom API (``dcmread``, ``Dataset.original_encoding``, ``DataElement``,
``MultiValue``, ``PersonName``, ``pydicom.datadict``, ``pydicom.valuerep.DA``...) is
imported where it is used.

Checked against pydicom 3.0.0, 3.0.1 and 3.0.2 (the test suite runs on the installed
3.0.2) and the source of the 3.1.0.dev0 main branch (June 2026), whose ``read_dataset``
stores (0008,0005) Specific Character Set already converted (a ``DataElement``) -- callers
accept converted elements everywhere. ``pyproject.toml`` pins ``pydicom>=3.0,<4``; a new
major version must be checked here first. The import fails loudly (:class:`ImportError`)
if the ``RawDataElement`` layout is not the one the positions below assume.

Hot paths alias these objects (no wrapper call per element); the small functions are
called once per dataset.

Example:
    >>> import io
    >>> from pydicom.data import get_testdata_file
    >>> raw = open(get_testdata_file("CT_small.dcm"), "rb").read()
    >>> fp = io.BytesIO(raw)
    >>> _ = fp.seek(raw.index(b"\\x08\\x00\\x05\\x00"))  # first element after the file meta
    >>> ds = read_dataset_before_pixels(fp, False, True)
    >>> raw_elem = elements(ds)[dict_key(0x00080060)]
    >>> raw_elem[RAW_VR], raw_elem[RAW_VALUE], raw_elem[RAW_IS_LITTLE_ENDIAN]
    ('CS', b'CT', True)
    >>> element_tags(ds)[:2] == [0x00080005, 0x00080008]
    True
    >>> raw_value_span(raw_elem) == (raw_elem[RAW_VALUE_TELL], 2)
    True
"""

from __future__ import annotations

import array
import operator
from collections.abc import Callable, MutableMapping, Sequence
from typing import IO, Any, Final

from pydicom import config as _config
from pydicom import filereader as _filereader
from pydicom.charset import convert_encodings as _convert_encodings
from pydicom.charset import decode_bytes as _decode_bytes
from pydicom.charset import default_encoding as _default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.valuerep import TEXT_VR_DELIMS as _TEXT_VR_DELIMS
from pydicom.values import convert_SQ as _convert_SQ

__all__ = [
    "DEFAULT_ENCODING",
    "PYDICOM_VERSIONS_CHECKED",
    "RAW_IS_IMPLICIT_VR",
    "RAW_IS_LITTLE_ENDIAN",
    "RAW_LENGTH",
    "RAW_TAG",
    "RAW_VALUE",
    "RAW_VALUE_TELL",
    "RAW_VR",
    "TEXT_VR_DELIMS",
    "RawDataElement",
    "convert_encodings",
    "convert_sq",
    "decode_bytes",
    "decode_text",
    "dict_key",
    "element_tags",
    "elements",
    "new_raw_element",
    "raw_length",
    "raw_value",
    "raw_value_span",
    "raw_vr",
    "read_dataset_before_pixels",
    "replace_un_with_known_vr",
]

PYDICOM_VERSIONS_CHECKED: Final = ("3.0.0", "3.0.1", "3.0.2", "3.1.0.dev0")
"""pydicom versions whose internals were checked against this module."""

# --------------------------------------------------------------------------
# RawDataElement: a NamedTuple; its positions are not a pydicom promise.
# --------------------------------------------------------------------------

_EXPECTED_FIELDS: Final = (
    "tag",
    "VR",
    "length",
    "value",
    "value_tell",
    "is_implicit_VR",
    "is_little_endian",
)
if tuple(getattr(RawDataElement, "_fields", ()))[: len(_EXPECTED_FIELDS)] != _EXPECTED_FIELDS:
    raise ImportError(
        "iac_spark.dicom.compat: pydicom's RawDataElement fields are "
        f"{getattr(RawDataElement, '_fields', None)!r}, expected {_EXPECTED_FIELDS!r} first; "
        f"this pydicom is not one of {PYDICOM_VERSIONS_CHECKED} (pin pydicom>=3.0,<4)"
    )

RAW_TAG: Final = 0
RAW_VR: Final = 1
"""Index of the VR in a ``RawDataElement`` (``None`` for implicit VR)."""
RAW_LENGTH: Final = 2
RAW_VALUE: Final = 3
"""Index of the value bytes (``None`` for a deferred value)."""
RAW_VALUE_TELL: Final = 4
RAW_IS_IMPLICIT_VR: Final = 5
RAW_IS_LITTLE_ENDIAN: Final = 6

#: C-level getters of one field, for ``map`` over many elements.
raw_vr: Final[Callable[[Any], Any]] = operator.itemgetter(RAW_VR)
raw_length: Final[Callable[[Any], Any]] = operator.itemgetter(RAW_LENGTH)
raw_value: Final[Callable[[Any], Any]] = operator.itemgetter(RAW_VALUE)


def new_raw_element(
    tag: int,
    vr: str | None,
    length: int,
    value: bytes | None,
    value_tell: int,
    is_implicit_vr: bool,
    is_little_endian: bool,
) -> RawDataElement:
    """A ``RawDataElement`` built from its fields (by position, as pydicom's reader does)."""
    return RawDataElement(
        BaseTag(tag), vr, length, value, value_tell, is_implicit_vr, is_little_endian
    )


def raw_value_span(elem: object) -> tuple[int, int] | None:
    """``(value offset, declared length)`` of a raw element; None for converted ones."""
    if type(elem) is not RawDataElement:
        return None
    return elem[RAW_VALUE_TELL], elem[RAW_LENGTH]


# --------------------------------------------------------------------------
# Dataset storage
# --------------------------------------------------------------------------


def elements(ds: Dataset) -> MutableMapping[BaseTag, Any]:
    """``ds._dict``: tag -> ``RawDataElement`` (not yet converted) or ``DataElement``,
    read without converting anything."""
    return ds._dict


dict_key: Final[Callable[[int], BaseTag]] = BaseTag
"""The key type of ``Dataset._dict`` (build lookup keys once, at import)."""


def element_tags(ds_or_elements: Dataset | MutableMapping[BaseTag, Any]) -> list[int]:
    """The tags of a dataset (or of its ``elements``) as plain ints, in storage order.

    ``BaseTag`` is an ``int`` subclass whose comparisons run in Python; ``array`` converts
    the keys in C.
    """
    keys = ds_or_elements._dict if isinstance(ds_or_elements, Dataset) else ds_or_elements
    try:
        return array.array("L", keys).tolist()
    except (TypeError, OverflowError):
        return [int(k) & 0xFFFFFFFF for k in keys]


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def read_dataset_before_pixels(
    fp: IO[bytes], is_implicit_vr: bool, is_little_endian: bool
) -> Dataset:
    """pydicom's ``read_dataset`` from the current position of ``fp``, stopping at pixel data
    (7FE0,0008/0009/0010) like ``dcmread(stop_before_pixels=True)``."""
    return _filereader.read_dataset(
        fp,  # type: ignore[arg-type]
        is_implicit_vr,
        is_little_endian,
        stop_when=_filereader._at_pixel_data,
    )


convert_sq: Final = _convert_SQ
"""``pydicom.values.convert_SQ(bytes, is_implicit_VR, is_little_endian, encodings, offset)``:
parse the value of a defined-length sequence (its items' elements stay raw)."""


def replace_un_with_known_vr() -> bool:
    """``pydicom.config.replace_un_with_known_vr``, read at call time (users may change it)."""
    return bool(_config.replace_un_with_known_vr)


# --------------------------------------------------------------------------
# Character sets
# --------------------------------------------------------------------------

DEFAULT_ENCODING: Final[str] = _default_encoding
"""pydicom's Python codec name for the default repertoire (``"iso8859"``)."""
TEXT_VR_DELIMS: Final = _TEXT_VR_DELIMS
"""Control characters that reset ISO 2022 escapes in text VRs (LT, ST, UT)."""
convert_encodings: Final = _convert_encodings
"""DICOM Specific Character Set values -> Python codec names (pydicom's spelling fixes)."""
decode_bytes: Final = _decode_bytes
"""``decode_bytes(value, encodings, delimiters)``: pydicom's charset decoder (ISO 2022)."""


def decode_text(value: bytes, encodings: Sequence[str]) -> str:
    """Decode one value of a text VR exactly as pydicom's reader does (``convert_text``):
    ISO 2022 code extensions honoured, undecodable bytes replaced with a warning."""
    return _decode_bytes(value, list(encodings) or [DEFAULT_ENCODING], _TEXT_VR_DELIMS)
