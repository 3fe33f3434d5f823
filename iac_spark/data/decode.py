"""Original Part-10 bytes → a pydicom dataset or its pixels, with errors that name the record.

:func:`to_dataset` reads the bytes with ``pydicom.dcmread(force=True)``. A file without a file
meta group (no preamble, or no (0002,0010)) gets the TransferSyntaxUID its encoding implies,
the one the scan records in ``records.transfer_syntax_uid``, so ``pixel_array`` works on it.
:func:`to_pixels` is ``to_dataset(...).pixel_array``, taking the shortcut of
:func:`~iac_spark.data.pixels.native_pixel_array` when the file is plain uncompressed
monochrome (same values, dtype and shape). Failures raise
:class:`~iac_spark.data.errors.SampleDecodeError` naming the record, its pack and row, and the
pydicom plugins that would decode a compressed transfer syntax.

Example:
    >>> from pydicom.data import get_testdata_file
    >>> raw = open(get_testdata_file("MR_small.dcm"), "rb").read()
    >>> where = Where(pack_id="p-0000", row=3, pack_path="/out/packs/ds/p-0000.iac")
    >>> to_dataset(raw, where).Modality, to_pixels(raw, where).shape
    ('MR', (64, 64))
    >>> raw = open(get_testdata_file("JPEGLSNearLossless_08.dcm"), "rb").read()
    >>> to_pixels(raw, where)  # doctest: +ELLIPSIS +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    iac_spark.data.errors.SampleDecodeError: record 1.2.826... (pack p-0000, row 3, /out/packs/ds/p-0000.iac): no pydicom plugin can decode JPEG-LS Lossy (Near-Lossless) Image Compression (1.2.840.10008.1.2.4.81): install one of: ...
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import SampleDecodeError
from .pixels import native_pixel_array

if TYPE_CHECKING:
    import numpy as np
    from pydicom.dataset import Dataset

__all__ = ["Where", "to_dataset", "to_pixels"]

_TS_BY_ENCODING = {
    (True, True): "1.2.840.10008.1.2",
    (False, True): "1.2.840.10008.1.2.1",
    (False, False): "1.2.840.10008.1.2.2",
}


@dataclass(frozen=True)
class Where:
    """The record a sample comes from, for error messages."""

    pack_id: str
    row: int
    pack_path: str
    sop_instance_uid: str | None = None

    def describe(self, sop_instance_uid: str | None = None) -> str:
        sop = self.sop_instance_uid or sop_instance_uid or "(no SOPInstanceUID)"
        return f"record {sop} (pack {self.pack_id}, row {self.row}, {self.pack_path})"


def to_dataset(p10: bytes, where: Where) -> Dataset:
    """The pydicom dataset of ``p10`` (pixel data included, a TransferSyntaxUID ensured)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lenient-parse warnings: the scan reported them
            ds = pydicom.dcmread(io.BytesIO(p10), force=True)
    except Exception as exc:
        raise SampleDecodeError(
            f"{where.describe()}: pydicom cannot read the record: {type(exc).__name__}: {exc}",
            pack_id=where.pack_id,
            row=where.row,
            sop_instance_uid=where.sop_instance_uid,
        ) from exc
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        implicit, little = ds.original_encoding
        ts = _TS_BY_ENCODING.get((bool(implicit), bool(little)))
        if ts is not None:
            if meta is None:
                ds.file_meta = meta = FileMetaDataset()
            meta.TransferSyntaxUID = ts
    return ds


def to_pixels(p10: bytes, where: Where) -> np.ndarray:
    """``pixel_array`` of ``p10`` as pydicom gives it; :class:`SampleDecodeError` if it can't."""
    fast = native_pixel_array(p10)
    if fast is not None:
        return fast
    ds = to_dataset(p10, where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ds.pixel_array
    except Exception as exc:
        raise _pixel_error(ds, where, exc) from exc


def _pixel_error(ds: Dataset, where: Where, exc: Exception) -> SampleDecodeError:
    from pydicom.pixels import get_decoder

    sop = ds.get("SOPInstanceUID")
    sop = str(sop) if sop else None
    ts = ds.file_meta.get("TransferSyntaxUID") if ds.file_meta is not None else None
    ts_text = f"{ts.name} ({ts})" if ts is not None else "an unknown transfer syntax"
    missing: tuple[str, ...] = ()
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        why = "the record has no pixel data"
    else:
        try:
            decoder = get_decoder(ts) if ts is not None else None
        except NotImplementedError:
            decoder = None
            why = f"pydicom has no pixel decoder at all for {ts_text}"
        else:
            if decoder is not None and not decoder.is_available:
                missing = tuple(decoder.missing_dependencies)
                why = (
                    f"no pydicom plugin can decode {ts_text}: install one of: {'; '.join(missing)}"
                )
            else:
                why = f"pydicom could not decode the pixels of {ts_text}"
    return SampleDecodeError(
        f"{where.describe(sop)}: {why} ({type(exc).__name__}: {exc}); "
        "decode='bytes' reads the record without decoding it",
        pack_id=where.pack_id,
        row=where.row,
        sop_instance_uid=where.sop_instance_uid or sop,
        transfer_syntax_uid=str(ts) if ts is not None else None,
        missing_plugins=missing,
    )
