"""The errors of training reads: one class per failure mode, each naming what to do.

Example:
    >>> e = SampleDecodeError("record 1.2.3 (pack p-0000, row 7): no pixel decoder",
    ...                       pack_id="p-0000", row=7, sop_instance_uid="1.2.3")
    >>> (e.pack_id, e.row, isinstance(e, IacSparkError))
    ('p-0000', 7, True)
"""

from __future__ import annotations

from ..errors import IacSparkError

__all__ = ["CohortQueryError", "ForkedCatalogError", "SampleDecodeError", "UnsupportedLayoutError"]


class CohortQueryError(IacSparkError, ValueError):
    """The query given to ``RecordDataset`` does not select records it can read.

    Raised when the result has neither ``pack_id`` and ``row`` nor ``sop_instance_uid``, has a
    null in them, names a ``sop_instance_uid`` that has no live record (or several: conflicting
    copies, so select ``pack_id, row`` to choose one), names a pack that is not in the catalog,
    or has a column called like the decoded payload (``bytes``, ``dataset``, ``pixels``).
    The message names the query's columns or the offending value.
    """


class ForkedCatalogError(IacSparkError, RuntimeError):
    """A catalog query was needed in a process forked from one that had used delta-rs.

    delta-rs runs on a tokio runtime that does not survive ``fork`` (it refuses to run in the
    child). Reading samples needs no catalog and works in forked workers; what queries the
    catalog (``RecordDataset.series``) does not: call it in the main process, or start the
    workers with ``spawn`` / ``forkserver`` (``DataLoader(..., multiprocessing_context="spawn")``,
    ``iter_batches(..., mp_context="spawn")``).
    """


class UnsupportedLayoutError(IacSparkError, ValueError):
    """A selected record lives in a pack whose ``payload_type`` has no reader here.

    ``RecordDataset`` reads DICOM packs (``dicom_p10``); select records of those packs only
    (``packs.payload_type`` says which layout a pack has).
    """


class SampleDecodeError(IacSparkError, RuntimeError):
    """One sample's bytes could not be turned into a pydicom dataset or pixels.

    The message names the record (``sop_instance_uid``), its pack and row, the pack file, the
    transfer syntax and, when pydicom lacks a pixel decoder for it, the plugins that would
    provide one (e.g. ``pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1``):
    install one of them, or read the sample with ``decode="bytes"``. The original error is
    chained (``__cause__``).
    """

    def __init__(
        self,
        message: str,
        *,
        pack_id: str,
        row: int,
        sop_instance_uid: str | None = None,
        transfer_syntax_uid: str | None = None,
        missing_plugins: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.pack_id = pack_id
        self.row = row
        self.sop_instance_uid = sop_instance_uid
        self.transfer_syntax_uid = transfer_syntax_uid
        self.missing_plugins = missing_plugins

    def __reduce__(self) -> tuple[object, ...]:
        # keyword-only fields survive pickling (errors travel back from worker processes)
        return (_rebuild, (str(self), self.pack_id, self.row, self.sop_instance_uid,
                           self.transfer_syntax_uid, self.missing_plugins))  # fmt: skip


def _rebuild(
    message: str,
    pack_id: str,
    row: int,
    sop_instance_uid: str | None,
    transfer_syntax_uid: str | None,
    missing_plugins: tuple[str, ...],
) -> SampleDecodeError:
    return SampleDecodeError(
        message,
        pack_id=pack_id,
        row=row,
        sop_instance_uid=sop_instance_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        missing_plugins=missing_plugins,
    )
