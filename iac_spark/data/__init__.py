"""Training reads: from a SQL cohort over the catalog to decoded samples.

:class:`RecordDataset` is a picklable map-style dataset over the records a catalog query
selects (``bytes``, pydicom ``dataset`` or ``pixels`` per item), with a deterministic,
resumable batch loader and series volumes. It imports no torch; it works as a PyTorch
``Dataset`` as it is. Module map: :mod:`.selection` (query → records), :mod:`.layouts`
(pack readers by ``payload_type``), :mod:`.decode` and :mod:`.pixels` (P10 bytes → dataset /
pixels), :mod:`.order` (epoch order, resume), :mod:`.workers` (worker processes),
:mod:`.dataset`, :mod:`.errors`.

Example (the runnable one, on a generated catalog, is in :mod:`iac_spark.data.dataset`):
    >>> from iac_spark.data import RecordDataset, SampleDecodeError
    >>> issubclass(SampleDecodeError, RuntimeError), RecordDataset.__module__
    (True, 'iac_spark.data.dataset')
    >>> ds = RecordDataset("demo_out", "SELECT pack_id, row, modality FROM records "
    ...                    "WHERE NOT retired AND modality = 'CT'", decode="pixels")  # doctest: +SKIP
    >>> ds[0]["pixels"].shape                                                     # doctest: +SKIP
    (256, 256)
"""

from __future__ import annotations

from .dataset import Decode, RecordDataset, SeriesShapeError
from .errors import (
    CohortQueryError,
    ForkedCatalogError,
    SampleDecodeError,
    UnsupportedLayoutError,
)

__all__ = [
    "CohortQueryError",
    "Decode",
    "ForkedCatalogError",
    "RecordDataset",
    "SampleDecodeError",
    "SeriesShapeError",
    "UnsupportedLayoutError",
]
