"""Pack layouts a training read understands, by ``packs.payload_type``.

Every layout answers the same three questions about one row of one pack: the instance's
original Part-10 bytes, its pydicom dataset, and its pixels (as pydicom's ``pixel_array``
gives them). :data:`LAYOUTS` maps a ``payload_type`` to the class that opens such a pack;
a new layout (e.g. ``dicom_patient``, read through iatro's ``DicomPatientReader``, whose
``read_pixel_array`` skips the P10 round trip) is one more class and one more entry.

* ``dicom_p10``: one record = one instance's original file bytes, zstd-compressed
  (``VariableRecordPack.read`` returns them byte-exact); datasets and pixels are decoded from
  those bytes (:mod:`iac_spark.data.decode`).

Readers are opened lazily, once per process, by whoever holds them
(:class:`~iac_spark.data.dataset.RecordDataset`); the pack file is memory-mapped by the
native reader.

Example:
    >>> sorted(LAYOUTS)
    ['dicom_p10', 'dicom_patient']
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from .decode import Where, to_dataset, to_pixels
from .errors import SampleDecodeError

if TYPE_CHECKING:
    import numpy as np
    from pydicom.dataset import Dataset

__all__ = ["LAYOUTS", "DicomP10Pack", "DicomPatientPack", "PackLayout"]

# iatro's batch decode runs on a native thread pool that a forked child does not get back:
# ``read_many`` with the default workers hangs in the child of a process that used it. After a
# fork (DataLoader workers, ``iter_batches(mp_context="fork")``) decode serially instead; the
# processes are the parallelism there.
_forked = False


def _mark_forked() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_mark_forked)


class PackLayout(Protocol):
    """One open pack of some layout; rows are the pack's record rows."""

    def read_bytes(self, rows: Sequence[int]) -> list[bytes]:
        """The original P10 bytes of each row, in order."""
        ...

    def read_datasets(self, rows: Sequence[int], where: Sequence[Where]) -> list[Dataset]:
        """The pydicom dataset of each row (``where[i]`` names row ``i`` in errors)."""
        ...

    def read_pixels(self, rows: Sequence[int], where: Sequence[Where]) -> list[np.ndarray]:
        """Each row's pixels as pydicom's ``pixel_array`` gives them."""
        ...

    def close(self) -> None:
        """Release the file (the object is not used afterwards)."""
        ...


class DicomP10Pack:
    """A ``dicom_p10`` pack: records are the instances' original files (zstd)."""

    payload_type = "dicom_p10"

    def __init__(self, path: str) -> None:
        from ..packing.reading import VerifiedPack

        self.path = path
        # every stored payload's CRC-32 is checked before it is decoded: a flipped byte is a
        # CorruptPackError naming pack and row, never a wrong sample
        self._pack = VerifiedPack(path, label=f"pack {os.path.basename(path)}")

    def read_bytes(self, rows: Sequence[int]) -> list[bytes]:
        if len(rows) == 1:
            return [self._pack.read(rows[0])]
        return list(self._pack.read_many(rows, workers=1 if _forked else None))

    def read_datasets(self, rows: Sequence[int], where: Sequence[Where]) -> list[Dataset]:
        return [to_dataset(b, w) for b, w in zip(self.read_bytes(rows), where, strict=True)]

    def read_pixels(self, rows: Sequence[int], where: Sequence[Where]) -> list[np.ndarray]:
        return [to_pixels(b, w) for b, w in zip(self.read_bytes(rows), where, strict=True)]

    def close(self) -> None:
        self._pack.close()


class DicomPatientPack:
    """A ``dicom_patient`` pack (``iatro.iac.adapters.dicom``): pixels are lossless JPEG XL,
    read by ``DicomPatientReader.read_pixel_array`` without a DICOM round trip; ``bytes`` and
    ``dataset`` are the DICOM file the reader rebuilds (``read_dicom``: same UIDs and pixels, the
    JPEG XL Lossless transfer syntax), not the original file bytes."""

    payload_type = "dicom_patient"

    def __init__(self, path: str) -> None:
        from iatro.iac.adapters.dicom import DicomPatientReader

        self.path = path
        self._reader = DicomPatientReader(path)

    def read_bytes(self, rows: Sequence[int]) -> list[bytes]:
        return [bytes(self._reader.read_dicom(r, verify=True)) for r in rows]

    def read_datasets(self, rows: Sequence[int], where: Sequence[Where]) -> list[Dataset]:
        return [to_dataset(b, w) for b, w in zip(self.read_bytes(rows), where, strict=True)]

    def read_pixels(self, rows: Sequence[int], where: Sequence[Where]) -> list[np.ndarray]:
        out = []
        for r, w in zip(rows, where, strict=True):
            try:
                out.append(self._reader.read_pixel_array(r, verify=True))
            except Exception as exc:
                raise SampleDecodeError(
                    f"{w.describe()}: cannot read the pixels of this dicom_patient record: "
                    f"{type(exc).__name__}: {exc}",
                    pack_id=w.pack_id, row=w.row, sop_instance_uid=w.sop_instance_uid,
                ) from exc  # fmt: skip
        return out

    def close(self) -> None:
        self._reader.close()


#: ``payload_type`` → the class that opens a pack of that layout.
LAYOUTS: dict[str, Callable[[str], PackLayout]] = {
    DicomP10Pack.payload_type: DicomP10Pack,
    DicomPatientPack.payload_type: DicomPatientPack,
}
