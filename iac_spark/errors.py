"""Exception classes, one per failure mode.

Every error that can end up in an ``error`` column is rendered as
``"ErrorClass: message"`` by :func:`error_text`, and its message names the file
(and the member inside a zip) so a user can find the bad input.

Example:
    >>> from iac_spark.errors import TruncatedMemberError, error_text
    >>> error_text(TruncatedMemberError("/d/a.zip!x.dcm: pixel data ends past the member"))
    'TruncatedMemberError: /d/a.zip!x.dcm: pixel data ends past the member'
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BuildError",
    "CatalogError",
    "CorruptPackError",
    "CorruptZipError",
    "DeltaJarsNotFoundError",
    "DicomJsonError",
    "DicomParseError",
    "EmptyMemberError",
    "IacSparkError",
    "InputNotFoundError",
    "JavaNotFoundError",
    "MemberTooLargeError",
    "MissingPackError",
    "NotDicomError",
    "OptionError",
    "TruncatedMemberError",
    "VerifyError",
    "error_text",
    "location",
]


class IacSparkError(Exception):
    """Base class of every error raised by iac_spark."""


class OptionError(IacSparkError, ValueError):
    """A reader/writer option has a bad value. The message names the option and what it accepts."""


class InputNotFoundError(IacSparkError, FileNotFoundError):
    """A path given to ``load()`` or ``build`` matched no file. Check the path or glob."""


class JavaNotFoundError(IacSparkError, RuntimeError):
    """No Java runtime was found for a local SparkSession. Install Java 17 or set JAVA_HOME."""


class DeltaJarsNotFoundError(IacSparkError, RuntimeError):
    """``local_session(delta=True)`` found no Delta Lake jars for the installed Spark.

    Either the cache is missing (run `make delta-jars`, or point ``IAC_SPARK_DELTA_JARS`` at a
    folder holding ``delta-spark_<spark major.minor>_2.13-*.jar`` and its dependencies), or a
    SparkSession without Delta already runs in this process: jars load only when the JVM starts,
    so ask for ``delta=True`` before any other session (or in a fresh process).
    """


class MemberError(IacSparkError):
    """Base class of problems with one input member; rendered into an error row in PERMISSIVE mode."""


class CorruptZipError(MemberError):
    """The archive (or a nested archive) cannot be opened or a member's compressed data is bad.

    The zip's central directory is unreadable, or inflating a member failed or its CRC-32
    did not match. Re-download or repair the archive; other archives are unaffected.
    """


class EmptyMemberError(MemberError):
    """A member or file has zero bytes, so it cannot be a DICOM file."""


class NotDicomError(MemberError):
    """The member has no ``DICM`` preamble and a forced parse does not read it as DICOM.

    Members with a known non-DICOM suffix (``.txt``, ``.xml``, ``.jpg`` ...) and no
    ``DICM`` magic are skipped silently and counted; this error is for everything else.
    """


class TruncatedMemberError(MemberError):
    """A DICOM element's declared length runs past the end of the member.

    Detected from the header alone (the member size is known from the zip directory),
    so metadata-only scans report it without inflating pixel data.
    """


class DicomParseError(MemberError):
    """pydicom could not parse the header (malformed element, bad VR, bad encoding...)."""


class DicomJsonError(MemberError):
    """The header parsed, but one of its elements cannot be encoded as DICOM JSON.

    Raised by ``iac_spark.dicom.dicom_json.dataset_to_json`` instead of emitting a
    placeholder (``"{}"``, an empty ``UN``), and re-raised by the header parse with the
    file and member; the message names the element, e.g. ``"/a.zip!x.dcm: cannot encode
    element (0010,0010): ..."``, with the path through sequence items for nested ones.
    Causes: a value of a type its VR cannot hold (a dataset built in code), a deferred
    value pydicom cannot load, sequences nested deeper than the encoder can recurse.
    Elements whose raw bytes merely do not fit their VR are not errors: they are encoded
    faithfully as ``UN`` with their bytes. Inspect the element with pydicom; the member can
    still be scanned without DICOM JSON (``meta=false``).
    """


class MemberTooLargeError(MemberError):
    """A member (or nested zip) is larger than the configured memory bound, or inflates past
    its declared size (a zip bomb). Raise the bound only if the machine has the memory."""


class CorruptPackError(IacSparkError, OSError):
    """A pack's bytes are not the ones that were published.

    Raised when a section of the pack (``header``, ``slide table``, ``index table``) does not
    parse or holds invalid data, or when a record's stored bytes do not have the CRC-32 that
    its index row records (``row`` is then set). No byte of a corrupted record is returned.
    The message names the pack file, the section or row, and what differs. Run
    ``iac-spark verify OUT`` to list every problem of a catalog, then restore the pack file
    from a copy (packs are immutable: any copy of the same file is good) or rebuild the
    dataset from its sources.
    """

    def __init__(
        self, message: str, *, pack: str, section: str | None = None, row: int | None = None
    ) -> None:
        super().__init__(message)
        self.pack, self.section, self.row = pack, section, row

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:  # keyword fields survive pickling (worker → driver)
        return (_rebuild_error, (type(self), str(self), self.pack, self.section, self.row))


class MissingPackError(CorruptPackError, FileNotFoundError):
    """A pack file named by the catalog (or a caller) does not exist.

    ``vacuum`` never removes a pack the catalog references, so the file was deleted or moved
    by hand, or the catalog was copied without its ``packs/`` folder. The message names the
    path; restore the file (or the whole OUT folder) from a copy.
    """


def _rebuild_error(
    cls: type[CorruptPackError], message: str, pack: str, section: str | None, row: int | None
) -> CorruptPackError:
    return cls(message, pack=pack, section=section, row=row)


class BuildError(IacSparkError, RuntimeError):
    """A pack build failed; nothing was published. The message says which stage failed."""


class CatalogError(IacSparkError, RuntimeError):
    """The Delta catalog under ``OUT/_catalog`` is missing, inconsistent or could not be committed."""


class VerifyError(IacSparkError, RuntimeError):
    """``verify`` found a mismatch between packs, their checksums and the catalog."""


def location(path: str, member: str | None) -> str:
    """Render a file + member location the way every message and error row does.

    >>> location("/data/a.zip", "s1/x.dcm")
    '/data/a.zip!s1/x.dcm'
    >>> location("/data/x.dcm", None)
    '/data/x.dcm'
    """
    return path if member is None else f"{path}!{member}"


def error_text(exc: BaseException) -> str:
    """``ErrorClass: message`` as stored in ``error`` columns."""
    return f"{type(exc).__name__}: {exc}"
