"""DICOM members as scan rows: the :class:`~iac_spark.inputs.scan.MemberParser` of ``zipdcm``.

:class:`DicomParser` turns one member into the ``zipdcm`` contract columns (UIDs, geometry,
``meta`` as DICOM JSON) and, for builds, the promoted attributes the catalog's ``records``
table stores (``promoted=True``), all from the one header parse of
:func:`~iac_spark.dicom.header.parse_header`.

Example:
    >>> import io
    >>> from pydicom.data import get_testdata_file
    >>> raw = open(get_testdata_file("CT_small.dcm"), "rb").read()
    >>> p = DicomParser(meta=False)
    >>> values = p.parse("ct.dcm", "ct.dcm", len(raw), raw[:132], None, io.BytesIO(raw[132:]).read)
    >>> dict(zip(p.schema.names, values))["modality"], values[-1]
    ('CT', None)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from .attributes import PROMOTED
from .dicom_json import JsonEncoderCache
from .header import Header, is_plainly_not_dicom, parse_header

__all__ = ["CONTRACT_SCHEMA", "PROMOTED_SCHEMA", "DicomParser"]

_S, _I32, _F64 = pa.string(), pa.int32(), pa.float64()

#: The ``zipdcm`` payload columns (between ``crc32`` and ``status``), in contract order.
CONTRACT_SCHEMA = pa.schema(
    [
        ("sop_instance_uid", _S),
        ("series_instance_uid", _S),
        ("study_instance_uid", _S),
        ("patient_id", _S),
        ("modality", _S),
        ("sop_class_uid", _S),
        ("transfer_syntax_uid", _S),
        ("instance_number", _I32),
        ("rows", _I32),
        ("columns", _I32),
        ("number_of_frames", _I32),
        ("has_pixel_data", pa.bool_()),
        ("meta", _S),
    ]
)

#: Promoted attributes (DESIGN.md "Catalog": ``records``), appended for builds.
PROMOTED_SCHEMA = pa.schema(
    [
        ("study_date", pa.date32()),
        ("series_number", _I32),
        ("study_description", _S),
        ("series_description", _S),
        ("body_part_examined", _S),
        ("patient_sex", _S),
        ("patient_age", _S),
        ("manufacturer", _S),
        ("manufacturer_model_name", _S),
        ("slice_thickness", _F64),
        ("spacing_between_slices", _F64),
        ("pixel_spacing", pa.list_(_F64)),
        ("image_position_patient", pa.list_(_F64)),
        ("image_orientation_patient", pa.list_(_F64)),
        ("bits_allocated", _I32),
        ("photometric_interpretation", _S),
        ("image_type", pa.list_(_S)),
    ]
)


# one list of promoted attributes: the header parse fills them, this schema types them
assert tuple(PROMOTED_SCHEMA.names) == PROMOTED, (
    "PROMOTED_SCHEMA must follow dicom.attributes.PROMOTED"
)


class DicomParser:
    """Parse DICOM members into row values; ``meta=False`` skips the JSON encoder entirely."""

    whole_member = False

    def __init__(
        self, *, meta: bool = True, promoted: bool = False, cache: JsonEncoderCache | None = None
    ) -> None:
        self.meta = meta
        self.promoted = promoted
        self.cache = cache if cache is not None else JsonEncoderCache()
        self.schema = (
            pa.schema([*CONTRACT_SCHEMA, *PROMOTED_SCHEMA]) if promoted else CONTRACT_SCHEMA
        )
        self._names = tuple(self.schema.names)

    def skips(self, name: str, head: bytes) -> bool:
        return is_plainly_not_dicom(name, head)

    def parse(
        self,
        where: str,
        name: str,
        size: int,
        head: bytes,
        data: bytes | None,
        fetch: Callable[[int], bytes],
    ) -> tuple[Any, ...]:
        h: Header = parse_header(
            fetch, size, where, head=head, cache=self.cache, meta=self.meta,
            promoted=self.promoted,
        )  # fmt: skip
        return tuple([getattr(h, n) for n in self._names])
