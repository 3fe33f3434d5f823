"""Hostile and broken inputs for tests and the reliability acceptance, with their expected fates.

Each ``write_*`` generator writes files under a given folder and returns a
:class:`HostileCase`: what it wrote and, per member, the fate the input layer
should give it (:class:`Expect`): ``ok`` (a row that reads, with its bytes where
small), ``error`` (an error row whose text holds one of ``reasons``) or
``skipped`` (not an input: plainly not DICOM, or a symlink not followed).
Members are named as the ``zipdcm`` scan names them: decoded names, ``#2`` for a
repeated name, ``!`` between nested zips.

The cases: zip-slip names, a zip bomb lying about its size, an absurd declared
size, ZIP64, 70,000 members, encrypted members, an empty zip, zero-byte members,
duplicate names, GBK / unflagged UTF-8 names, a zip cut short inside its N-th
member (optionally written with data descriptors), a CRC mismatch, gzip members,
nesting past a depth limit, symlinks out of the input root, files that are not regular
files (a FIFO), unreadable files, DICOM with absurd declared lengths and encapsulated
pixel data that ends without its sequence delimiter.
DICOM bytes are pydicom's ``CT_small.dcm`` with a new SOP Instance UID each
(:func:`dicom_bytes`). Everything is deterministic.

Example:
    >>> import tempfile, pathlib
    >>> case = write_cut_zip(pathlib.Path(tempfile.mkdtemp()), members=4, cut_member=3)
    >>> [(e.member, e.fate) for e in case.expect]
    [('CUT/IM0001.dcm', 'ok'), ('CUT/IM0002.dcm', 'ok'), ('CUT/IM0003.dcm', 'error')]
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import random
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..inputs.archives import MAX_IN_MEMORY_BYTES

__all__ = [
    "Expect",
    "Fate",
    "HostileCase",
    "dicom_bytes",
    "runs_as_root_reader",
    "streamed_zip_bytes",
    "write_absurd_dicom",
    "write_absurd_size",
    "write_all",
    "write_crc_mismatch",
    "write_cut_zip",
    "write_duplicate_names",
    "write_empty_zip",
    "write_encapsulated",
    "write_encrypted",
    "write_gbk_names",
    "write_gzip_members",
    "write_many_members",
    "write_nested",
    "write_nul_name",
    "write_special_files",
    "write_symlinks",
    "write_unreadable",
    "write_zero_byte",
    "write_zip64",
    "write_zip_bomb",
    "write_zip_slip",
    "zip_bytes",
]

Fate = Literal["ok", "error", "skipped"]

_DATE = (2024, 1, 2, 3, 4, 6)
_UID_ROOT = "1.2.826.0.1.3680043.8.498.99."  # pydicom's root + a branch of our own
_CUT = ("cut short", "Truncated")


@dataclass(frozen=True)
class Expect:
    """The fate one member (or file) should get.

    ``member`` is the name as scanned (None: the file itself, e.g. a bare file or an
    archive-level error); ``file`` is the path relative to the case's folder for cases
    that write several files (None: the case's ``path``). ``reasons``: an error row's
    text must contain one of them (case-insensitive). ``data``: the bytes an ``ok``
    member reads as (its content after gzip), where kept.
    """

    member: str | None
    fate: Fate
    reasons: tuple[str, ...] = ()
    data: bytes | None = field(default=None, repr=False)
    file: str | None = None


@dataclass(frozen=True)
class HostileCase:
    """What a generator wrote (``path``: a file, or a folder for multi-file cases) and the
    expected fate of each member; ``note`` says anything a test must know (root, limits)."""

    kind: str
    path: Path
    expect: tuple[Expect, ...]
    note: str = ""

    def fates(self) -> dict[str, int]:
        """How many members should end ok / error / skipped (the accounting invariant)."""
        out = {"ok": 0, "error": 0, "skipped": 0}
        for e in self.expect:
            out[e.fate] += 1
        return out


# ---------------------------------------------------------------------------- building blocks
@functools.lru_cache(maxsize=1)
def _template() -> bytes:
    from pydicom.data import get_testdata_file

    return Path(str(get_testdata_file("CT_small.dcm"))).read_bytes()


def dicom_bytes(i: int) -> bytes:
    """``CT_small.dcm`` (39 KB, explicit VR little endian) with SOP Instance UID ``1.2.826.0.1.3680043.8.498.99.<i>``.

    >>> a, b = dicom_bytes(1), dicom_bytes(2)
    >>> a[128:132], a != b, len(a) == len(b)
    (b'DICM', True, True)
    """
    import pydicom
    from pydicom.uid import UID

    ds = pydicom.dcmread(io.BytesIO(_template()))
    uid = UID(f"{_UID_ROOT}{i}")
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def _info(name: str, compression: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name, _DATE)
    zi.compress_type = compression
    zi.external_attr = 0o644 << 16
    return zi


def zip_bytes(
    members: Iterable[tuple[str, bytes]],
    *,
    compression: int = zipfile.ZIP_DEFLATED,
    force_zip64: bool = False,
) -> bytes:
    """A zip of ``(name, data)`` members written to a seekable buffer (sizes in the headers)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name"
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in members:
                with zf.open(_info(name, compression), "w", force_zip64=force_zip64) as w:
                    w.write(data)
    return buf.getvalue()


class _Pipe(io.RawIOBase):
    """A write-only, non-seekable sink: zipfile then writes data descriptors (flag bit 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        data = bytes(b)  # type: ignore[call-overload]
        self.buf += data
        return len(data)


def streamed_zip_bytes(
    members: Iterable[tuple[str, bytes]],
    *,
    compression: int = zipfile.ZIP_DEFLATED,
    force_zip64: bool = False,
) -> bytes:
    """A zip written by :mod:`zipfile` to a non-seekable stream: every member has flag bit 3,
    zero sizes in its local header and a signed data descriptor after its data."""
    pipe = _Pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(pipe, "w") as zf:
            for name, data in members:
                with zf.open(_info(name, compression), "w", force_zip64=force_zip64) as w:
                    w.write(data)
    return bytes(pipe.buf)


@dataclass(frozen=True)
class _Span:
    name: str
    header: int  # local header offset
    data: int  # first data byte
    end: int  # one past the data (the descriptor follows, if any)
    central: int  # central directory entry offset


def _spans(blob: bytes) -> list[_Span]:
    out: list[_Span] = []
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        infos = zf.infolist()
    eocd = blob.rfind(b"PK\x05\x06")
    cd = struct.unpack_from("<I", blob, eocd + 16)[0]
    if cd == 0xFFFFFFFF:  # ZIP64: offset in the ZIP64 end record
        cd = struct.unpack_from("<Q", blob, blob.rfind(b"PK\x06\x06") + 48)[0]
    for zi in infos:
        n, m = struct.unpack_from("<HH", blob, zi.header_offset + 26)
        data = zi.header_offset + 30 + n + m
        out.append(_Span(zi.filename, zi.header_offset, data, data + zi.compress_size, cd))
        n, m, k = struct.unpack_from("<HHH", blob, cd + 28)
        cd += 46 + n + m + k
    return out


def _patch_name(blob: bytes, placeholder: bytes, raw: bytes, *, utf8_flag: bool | None) -> bytes:
    """Replace a member name (same length) in its local and central headers, and set or
    clear the UTF-8 flag (bit 11) of both; zipfile cannot write such names itself."""
    assert len(placeholder) == len(raw)
    assert blob.count(placeholder) == 2, "placeholder must occur once per header"
    out = bytearray(blob.replace(placeholder, raw))
    for sig, name_at, flag_at in ((b"PK\x03\x04", 30, 6), (b"PK\x01\x02", 46, 8)):
        i = out.find(sig)
        while i >= 0:
            if out[i + name_at : i + name_at + len(raw)] == raw and utf8_flag is not None:
                flags = struct.unpack_from("<H", out, i + flag_at)[0]
                flags = flags | 0x800 if utf8_flag else flags & ~0x800
                struct.pack_into("<H", out, i + flag_at, flags)
            i = out.find(sig, i + 1)
    return bytes(out)


def _set_u32(blob: bytearray, span: _Span, local_at: int, central_at: int, value: int) -> None:
    struct.pack_into("<I", blob, span.header + local_at, value)
    struct.pack_into("<I", blob, span.central + central_at, value)


def _write(path: Path, blob: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return path


# ---------------------------------------------------------------------------- the cases
def write_zip_slip(folder: Path, name: str = "slip.zip") -> HostileCase:
    """Names that climb out or are absolute: ``../../evil.dcm``, ``/abs/evil.dcm``,
    ``dir\\..\\evil.dcm``, ``..\\..\\win.dcm``, ``C:/evil.dcm`` and one with a NUL byte.

    All are valid DICOM and read fine: a name is recorded, never used as a path. The NUL
    name ``nul\\x00.dcm`` reads as ``nul``, because :mod:`zipfile` (and the salvage walk,
    for consistency) cut names at the first NUL.
    """
    names = [
        "../../evil.dcm",
        "/abs/evil.dcm",
        "dir\\..\\evil.dcm",
        "..\\..\\win.dcm",
        "C:/evil.dcm",
    ]
    datas = [dicom_bytes(100 + i) for i in range(len(names) + 1)]
    placeholder = b"nulX.dcm"
    blob = zip_bytes([*zip(names, datas[:-1], strict=True), (placeholder.decode(), datas[-1])])
    blob = _patch_name(blob, placeholder, b"nul\x00.dcm", utf8_flag=None)
    expect = [Expect(n, "ok", data=d) for n, d in zip(names, datas[:-1], strict=True)]
    expect.append(Expect("nul", "ok", data=datas[-1]))
    return HostileCase(
        "zip-slip",
        _write(folder / name, blob),
        tuple(expect),
        "the NUL name reads as 'nul' (cut at the NUL, as zipfile does)",
    )


def write_nul_name(folder: Path, name: str = "nulname.zip") -> HostileCase:
    """A member whose stored name *starts* with a NUL byte (``\\x00evil.dcm``) beside a good
    ``IM0001.dcm``: cut at the NUL, its name reads as the empty string ``""``.

    ``zipfile.ZipInfo.is_dir()`` raises ``IndexError`` on an empty name, so code that calls
    it on every entry (``list_members`` did) crashes on this archive.
    """
    evil, good = dicom_bytes(150), dicom_bytes(151)
    placeholder = b"Xevil.dcm"
    blob = zip_bytes([(placeholder.decode(), evil), ("IM0001.dcm", good)])
    blob = _patch_name(blob, placeholder, b"\x00evil.dcm", utf8_flag=None)
    return HostileCase(
        "nul-name",
        _write(folder / name, blob),
        (Expect("", "ok", data=evil), Expect("IM0001.dcm", "ok", data=good)),
        "the first name is empty once cut at its NUL",
    )


def write_zip_bomb(
    folder: Path,
    name: str = "bomb.zip",
    *,
    inflated: int = 64 << 20,
    declared: int = 4096,
    crc_of_declared: bool = False,
) -> HostileCase:
    """``bomb.dcm``: ``inflated`` zero bytes deflated (~1/1000 of that on disk) whose local
    and central headers declare only ``declared`` bytes; beside it a good ``ok.dcm``.

    The CRC-32 in the headers is that of all the bytes; with ``crc_of_declared`` it is that
    of the first ``declared`` bytes instead. :mod:`zipfile` stops reading at the declared
    size, so it then returns those bytes *without any error*; a reader that asks for one
    byte more than declared (the salvage reader does) still sees the bomb.
    """
    ok = dicom_bytes(200)
    blob = bytearray(zip_bytes([("ok.dcm", ok), ("bomb.dcm", bytes(inflated))]))
    span = _spans(bytes(blob))[1]
    _set_u32(blob, span, 22, 24, declared)
    if crc_of_declared:
        _set_u32(blob, span, 14, 16, zlib.crc32(bytes(declared)))
    reasons: tuple[str, ...] = ("inflates past", "MemberTooLarge", "CRC", "Bad CRC")
    if crc_of_declared:
        reasons = ("inflates past", "MemberTooLarge")
    return HostileCase(
        "zip-bomb",
        _write(folder / name, bytes(blob)),
        (Expect("ok.dcm", "ok", data=ok), Expect("bomb.dcm", "error", reasons)),
        f"bomb.dcm inflates to {inflated} bytes, declares {declared}"
        + (
            "; its CRC matches the declared bytes: zipfile alone does not notice"
            if crc_of_declared
            else ""
        ),
    )


def write_absurd_size(
    folder: Path, name: str = "absurd.zip", *, declared: int = 0xFFFFFFFE
) -> HostileCase:
    """``absurd.dcm`` declares ``declared`` bytes (default 4 GiB - 2, no ZIP64) but holds one
    small DICOM: refused before reading (above any in-memory bound); ``ok.dcm`` beside it."""
    ok, small = dicom_bytes(210), dicom_bytes(211)
    blob = bytearray(zip_bytes([("ok.dcm", ok), ("absurd.dcm", small)]))
    _set_u32(blob, _spans(bytes(blob))[1], 22, 24, declared)
    reasons = ("MemberTooLarge", "above", "limit", "declares", "ends after")
    return HostileCase(
        "absurd-size",
        _write(folder / name, bytes(blob)),
        (Expect("ok.dcm", "ok", data=ok), Expect("absurd.dcm", "error", reasons)),
        f"absurd.dcm declares {declared} bytes (the in-memory bound is {MAX_IN_MEMORY_BYTES})",
    )


def write_zip64(folder: Path, name: str = "zip64.zip", *, streamed: bool = False) -> HostileCase:
    """Two DICOM members written with ``force_zip64`` (ZIP64 extra fields, ZIP64 end records);
    with ``streamed`` to a pipe, so they also have ZIP64 data descriptors."""
    members = [(f"Z64/IM{i:04d}.dcm", dicom_bytes(300 + i)) for i in (1, 2)]
    write = streamed_zip_bytes if streamed else zip_bytes
    blob = write(members, force_zip64=True)
    return HostileCase(
        "zip64",
        _write(folder / name, blob),
        tuple(Expect(n, "ok", data=d) for n, d in members),
    )


def write_many_members(
    folder: Path, name: str = "many.zip", *, members: int = 70_000
) -> HostileCase:
    """``members`` tiny stored ``M/000000.txt`` members (plainly not DICOM: skipped) and one
    DICOM ``M/IM0001.dcm`` last; 70,000 write in about a second (7 MB)."""
    dcm = dicom_bytes(400)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(members):
            zf.writestr(_info(f"M/{i:06d}.txt", zipfile.ZIP_STORED), b"x")
        zf.writestr(_info("M/IM0001.dcm"), dcm)
    expect = [Expect(f"M/{i:06d}.txt", "skipped") for i in range(members)]
    expect.append(Expect("M/IM0001.dcm", "ok", data=dcm))
    return HostileCase("many-members", _write(folder / name, buf.getvalue()), tuple(expect))


def write_encrypted(folder: Path, name: str = "enc.zip") -> HostileCase:
    """``ENC/secret.dcm`` has flag bit 0 (encrypted) in its local and central headers and
    holds 2 KiB of seeded random bytes (no real ZipCrypto: the flag is what readers act
    on); ``ENC/plain.dcm`` beside it is a good DICOM."""
    plain = dicom_bytes(500)
    garbage = random.Random(500).randbytes(2048)
    blob = bytearray(
        zip_bytes(
            [("ENC/plain.dcm", plain), ("ENC/secret.dcm", garbage)], compression=zipfile.ZIP_STORED
        )
    )
    span = _spans(bytes(blob))[1]
    blob[span.header + 6] |= 1
    blob[span.central + 8] |= 1
    return HostileCase(
        "encrypted",
        _write(folder / name, bytes(blob)),
        (
            Expect("ENC/plain.dcm", "ok", data=plain),
            Expect("ENC/secret.dcm", "error", ("encrypted",)),
        ),
    )


def write_empty_zip(folder: Path, name: str = "empty.zip") -> HostileCase:
    """A valid zip with no members (22 bytes): no rows, no error."""
    buf = io.BytesIO()
    zipfile.ZipFile(buf, "w").close()
    return HostileCase("empty", _write(folder / name, buf.getvalue()), ())


def write_zero_byte(folder: Path, name: str = "zero.zip") -> HostileCase:
    """``ZERO/zero.dcm`` (0 bytes: an error row), ``ZERO/empty.txt`` (0 bytes, plainly not
    DICOM: skipped) and a good ``ZERO/IM0001.dcm``."""
    dcm = dicom_bytes(600)
    blob = zip_bytes([("ZERO/zero.dcm", b""), ("ZERO/empty.txt", b""), ("ZERO/IM0001.dcm", dcm)])
    return HostileCase(
        "zero-byte",
        _write(folder / name, blob),
        (
            Expect("ZERO/zero.dcm", "error", ("zero-byte", "Empty")),
            Expect("ZERO/empty.txt", "skipped"),
            Expect("ZERO/IM0001.dcm", "ok", data=dcm),
        ),
    )


def write_duplicate_names(folder: Path, name: str = "dupnames.zip") -> HostileCase:
    """Two different DICOMs stored under the same name ``DUP/IM0001.dcm``: the second is
    scanned as ``DUP/IM0001.dcm#2``."""
    a, b = dicom_bytes(700), dicom_bytes(701)
    blob = zip_bytes([("DUP/IM0001.dcm", a), ("DUP/IM0001.dcm", b)])
    return HostileCase(
        "duplicate-names",
        _write(folder / name, blob),
        (Expect("DUP/IM0001.dcm", "ok", data=a), Expect("DUP/IM0001.dcm#2", "ok", data=b)),
    )


def write_gbk_names(folder: Path, name: str = "gbk.zip") -> HostileCase:
    """Names stored without the UTF-8 flag: two in GBK (as Chinese Windows tools write them)
    and one in UTF-8; they decode to ``张三/1.dcm``, ``李四/检查.dcm`` and ``café/x.dcm``."""
    names = ["张三/1.dcm", "李四/检查.dcm"]
    datas = [dicom_bytes(800 + i) for i in range(3)]
    raws = [n.encode("gbk") for n in names] + ["café/x.dcm".encode()]
    holders = [b"@" * (len(r) - 4) + b".dcm" for r in raws]
    holders = [h[:-5] + str(i).encode() + h[-4:] for i, h in enumerate(holders)]
    blob = zip_bytes([(h.decode(), d) for h, d in zip(holders, datas, strict=True)])
    for h, r in zip(holders, raws, strict=True):
        blob = _patch_name(blob, h, r, utf8_flag=False)
    decoded = [*names, "café/x.dcm"]
    return HostileCase(
        "gbk-names",
        _write(folder / name, blob),
        tuple(Expect(n, "ok", data=d) for n, d in zip(decoded, datas, strict=True)),
    )


def write_cut_zip(
    folder: Path,
    name: str = "cut.zip",
    *,
    members: int = 8,
    cut_member: int = 5,
    at: Literal["data", "header", "descriptor"] = "data",
    streamed: bool = False,
    compression: int = zipfile.ZIP_DEFLATED,
) -> HostileCase:
    """A zip of ``members`` DICOMs ``CUT/IM0001.dcm``... cut short inside member
    ``cut_member`` (1-based): in the middle of its data, 10 bytes into its local header
    (then its name is unknown: an archive-level error), or inside its data descriptor
    (``streamed`` only). No central directory survives.

    Expected: the members before it ok (byte-exact), one truncation error for it, nothing
    after it. ``streamed`` writes through a pipe (data descriptors, flag bit 3).
    """
    if not 1 <= cut_member <= members:
        raise ValueError("cut_member must be within 1..members")
    if at == "descriptor" and not streamed:
        raise ValueError("only streamed zips have data descriptors")
    datas = [(f"CUT/IM{i:04d}.dcm", dicom_bytes(900 + i)) for i in range(1, members + 1)]
    write = streamed_zip_bytes if streamed else zip_bytes
    blob = write(datas, compression=compression)
    span = _spans(blob)[cut_member - 1]
    pos = {
        "data": (span.data + span.end) // 2,
        "header": span.header + 10,
        "descriptor": span.end + 6,
    }[at]
    expect = [Expect(n, "ok", data=d) for n, d in datas[: cut_member - 1]]
    cut_name = None if at == "header" else datas[cut_member - 1][0]
    expect.append(Expect(cut_name, "error", _CUT))
    return HostileCase(
        "cut",
        _write(folder / name, blob[:pos]),
        tuple(expect),
        f"cut at byte {pos} of {len(blob)} ({at} of member {cut_member}); "
        f"{members - cut_member} members after it are lost",
    )


def write_crc_mismatch(folder: Path, name: str = "crc.zip") -> HostileCase:
    """``CRC/IM0002.dcm`` (stored) has one byte flipped near the end of its data (inside the
    pixels, so its header still parses): only a read to the end sees the CRC-32 mismatch.
    ``CRC/IM0001.dcm`` beside it is intact."""
    a, b = dicom_bytes(1000), dicom_bytes(1001)
    blob = bytearray(
        zip_bytes([("CRC/IM0001.dcm", a), ("CRC/IM0002.dcm", b)], compression=zipfile.ZIP_STORED)
    )
    span = _spans(bytes(blob))[1]
    blob[span.end - 10] ^= 0xFF
    return HostileCase(
        "crc-mismatch",
        _write(folder / name, bytes(blob)),
        (Expect("CRC/IM0001.dcm", "ok", data=a), Expect("CRC/IM0002.dcm", "error", ("CRC",))),
        "the flip is 10 bytes before the member's end: a header-only read does not see it",
    )


def write_gzip_members(
    folder: Path,
    name: str = "gz.zip",
    *,
    bomb_bytes: int | None = None,
    max_member_bytes: int = MAX_IN_MEMORY_BYTES,
) -> HostileCase:
    """Gzip inside zip: ``GZ/IM0001.dcm.gz`` (a gzipped DICOM), ``GZ/IM0002.dcm`` (gzip
    content under a plain name: recognised by its magic bytes), ``GZ/broken.dcm.gz`` (its
    gzip stream cut in half) and, with ``bomb_bytes``, ``GZ/bomb.dcm.gz``: that many zero
    bytes gzipped (an error either way: above ``max_member_bytes``, or not DICOM).
    Members are stored (gzip data does not deflate further). ``data`` is the inflated
    content; names stay as stored."""
    one, two = dicom_bytes(1100), dicom_bytes(1101)
    broken = gzip.compress(dicom_bytes(1102), mtime=0)
    members = [
        ("GZ/IM0001.dcm.gz", gzip.compress(one, mtime=0)),
        ("GZ/IM0002.dcm", gzip.compress(two, mtime=0)),
        ("GZ/broken.dcm.gz", broken[: len(broken) // 2]),
    ]
    expect = [
        Expect("GZ/IM0001.dcm.gz", "ok", data=one),
        Expect("GZ/IM0002.dcm", "ok", data=two),
        Expect("GZ/broken.dcm.gz", "error", ("gzip", "cut short", "CorruptGzip")),
    ]
    if bomb_bytes is not None:
        comp = zlib.compressobj(9, zlib.DEFLATED, 31)
        chunk, left, parts = bytes(1 << 20), bomb_bytes, []
        while left > 0:
            parts.append(comp.compress(chunk[: min(left, len(chunk))]))
            left -= len(chunk)
        parts.append(comp.flush())
        members.append(("GZ/bomb.dcm.gz", b"".join(parts)))
        reasons = (
            ("inflates past", "MemberTooLarge", "limit")
            if bomb_bytes > max_member_bytes
            else ("NotDicom", "not DICOM", "DicomParse")
        )
        expect.append(Expect("GZ/bomb.dcm.gz", "error", reasons))
    return HostileCase(
        "gzip-members",
        _write(folder / name, zip_bytes(members, compression=zipfile.ZIP_STORED)),
        tuple(expect),
        "" if bomb_bytes is None else f"GZ/bomb.dcm.gz inflates to {bomb_bytes} bytes",
    )


def write_nested(
    folder: Path, name: str = "nest.zip", *, levels: int = 5, max_nesting_depth: int = 4
) -> HostileCase:
    """Zips nested ``levels`` deep: the archive holds ``lvl0.dcm`` and ``l1.zip``, which holds
    ``lvl1.dcm`` and ``l2.zip``, ... down to ``l<levels>.zip`` holding ``lvl<levels>.dcm``.

    A nested zip ``l<d>.zip`` opens at depth ``d`` (see :mod:`iac_spark.inputs.limits`):
    with ``max_nesting_depth`` = m the members ``lvl0``..``lvl<m>`` are ok and
    ``l1.zip!…!l<m+1>.zip`` is one error row (its contents are not read).
    """
    inner = zip_bytes([(f"lvl{levels}.dcm", dicom_bytes(1200 + levels))])
    for d in range(levels - 1, -1, -1):
        inner = zip_bytes([(f"lvl{d}.dcm", dicom_bytes(1200 + d)), (f"l{d + 1}.zip", inner)])
    expect: list[Expect] = []
    prefix = ""
    for d in range(levels + 1):
        if d > max_nesting_depth:
            expect.append(
                Expect(prefix[:-1], "error", ("maxNestingDepth", "NestingTooDeep", "nest"))
            )
            break
        expect.append(Expect(f"{prefix}lvl{d}.dcm", "ok", data=dicom_bytes(1200 + d)))
        prefix += f"l{d + 1}.zip!"
    return HostileCase(
        "nested",
        _write(folder / name, inner),
        tuple(expect),
        f"{levels} levels of nested zips, expectations for maxNestingDepth = {max_nesting_depth}",
    )


def write_symlinks(
    folder: Path, *, follow_symlinks: bool = False, outside: Path | None = None
) -> HostileCase:
    """An input root ``root/`` with ``inside.dcm``, ``link_in.dcm`` (-> ``inside.dcm``),
    ``link_out.dcm`` (-> ``<outside>/secret.dcm``) and ``dir_out/`` (-> ``<outside>``, so
    ``dir_out/secret.dcm``); ``outside`` defaults to ``folder/outside`` (give a folder beside
    ``folder`` to have the links leave ``folder`` itself too). ``path`` is ``root``; ``file``
    in each expectation is relative to it.

    Unless ``follow_symlinks``, the two links that leave the root are listed but not read:
    ``link_out.dcm`` and the folder link ``dir_out`` (whose content is never listed) are
    each one skipped input. With it, ``link_out.dcm`` and ``dir_out/secret.dcm`` are read.
    """
    root = folder / "root"
    outside = outside or folder / "outside"
    root.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    inside, secret = dicom_bytes(1300), dicom_bytes(1301)
    (root / "inside.dcm").write_bytes(inside)
    (outside / "secret.dcm").write_bytes(secret)
    target = os.path.relpath(outside, root)
    os.symlink("inside.dcm", root / "link_in.dcm")
    os.symlink(os.path.join(target, "secret.dcm"), root / "link_out.dcm")
    os.symlink(target, root / "dir_out", target_is_directory=True)
    links: tuple[Expect, ...]
    if follow_symlinks:
        links = (
            Expect(None, "ok", data=secret, file="link_out.dcm"),
            Expect(None, "ok", data=secret, file="dir_out/secret.dcm"),
        )
    else:
        reasons = ("symlink", "outside")
        links = (
            Expect(None, "skipped", reasons, file="link_out.dcm"),
            Expect(None, "skipped", reasons, file="dir_out"),
        )
    return HostileCase(
        "symlinks",
        root,
        (
            Expect(None, "ok", data=inside, file="inside.dcm"),
            Expect(None, "ok", data=inside, file="link_in.dcm"),
            *links,
        ),
        "link_in.dcm holds the same bytes as inside.dcm (a build counts it as a duplicate)",
    )


def write_special_files(folder: Path) -> HostileCase:
    """``special/`` with a FIFO ``pipe.dcm`` (opening it for reading would block until a
    writer comes) beside a good ``IM0001.dcm``: the FIFO is listed but never opened (one
    skipped input). ``path`` is ``special/``."""
    base = folder / "special"
    base.mkdir(parents=True, exist_ok=True)
    dcm = dicom_bytes(1350)
    (base / "IM0001.dcm").write_bytes(dcm)
    os.mkfifo(base / "pipe.dcm")
    return HostileCase(
        "special-files",
        base,
        (
            Expect(None, "ok", data=dcm, file="IM0001.dcm"),
            Expect(None, "skipped", ("not a regular file",), file="pipe.dcm"),
        ),
        "pipe.dcm is a FIFO: reading it would block",
    )


def runs_as_root_reader(folder: Path) -> bool:
    """True when files with mode 000 can still be read here (running as root, or a file
    system that ignores modes): then "unreadable" inputs cannot be made with chmod."""
    probe = folder / ".chmod-probe"
    probe.write_bytes(b"x")
    try:
        probe.chmod(0)
        try:
            with open(probe, "rb") as fh:
                fh.read(1)
            return True
        except PermissionError:
            return False
    finally:
        probe.chmod(0o600)
        probe.unlink()


def write_unreadable(folder: Path) -> HostileCase:
    """``unreadable/locked.dcm`` (a bare DICOM) and ``unreadable/locked.zip`` (one member
    ``IM0001.dcm``), both ``chmod 000``; ``path`` is ``unreadable/``.

    Expected: an error row each (permission denied). Where mode 000 does not stop reading
    (root: :func:`runs_as_root_reader`), they read fine and the expectations say ``ok``;
    ``note`` says which. Restore the modes (``chmod 0o644``) to delete them as non-root.
    """
    base = folder / "unreadable"
    base.mkdir(parents=True, exist_ok=True)
    dcm, member = dicom_bytes(1400), dicom_bytes(1401)
    (base / "locked.dcm").write_bytes(dcm)
    (base / "locked.zip").write_bytes(zip_bytes([("IM0001.dcm", member)]))
    readable = runs_as_root_reader(base)
    for p in ("locked.dcm", "locked.zip"):
        (base / p).chmod(0)
    if readable:
        expect = (
            Expect(None, "ok", data=dcm, file="locked.dcm"),
            Expect("IM0001.dcm", "ok", data=member, file="locked.zip"),
        )
        note = "mode 000 is still readable here (running as root): expectations are ok"
    else:
        reasons = ("Permission denied", "Errno 13")
        expect = (
            Expect(None, "error", reasons, file="locked.dcm"),
            Expect(None, "error", reasons, file="locked.zip"),
        )
        note = "mode 000: reading fails with permission denied"
    return HostileCase("unreadable", base, expect, note)


def _encapsulated(i: int, frames: int = 4, frame_bytes: int = 3000) -> bytes:
    """A JPEG Baseline DICOM whose pixel data is ``frames`` fragments of seeded random
    bytes (never decoded here) and ends with its sequence delimiter, the file's last 8 bytes."""
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID, JPEGBaseline8Bit

    ds = pydicom.dcmread(io.BytesIO(_template()))
    uid = UID(f"{_UID_ROOT}{i}")
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    del ds[0xFFFCFFFC]  # trailing padding: the pixels come last
    ds.PixelData = encapsulate(
        [random.Random(i * 100 + f).randbytes(frame_bytes) for f in range(frames)]
    )
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.NumberOfFrames = frames
    buf = io.BytesIO()
    ds.save_as(buf)
    blob = buf.getvalue()
    assert blob[-8:] == b"\xfe\xff\xdd\xe0\x00\x00\x00\x00", "delimiter last"
    return blob


def write_encapsulated(
    folder: Path,
    name: str = "encaps.zip",
    *,
    compression: int = zipfile.ZIP_DEFLATED,
    frames: int = 4,
    frame_bytes: int = 3000,
) -> HostileCase:
    """Encapsulated (JPEG Baseline) pixel data, ``frames`` fragments of ``frame_bytes``
    bytes: ``ENC/ok.dcm`` intact; ``ENC/no_delimiter.dcm`` without its final sequence
    delimiter (the file ends right after its last fragment); ``ENC/cut_fragment.dcm`` cut
    inside its last fragment; ``ENC/absurd_fragment.dcm`` whose second fragment declares
    0x7FFFFFF0 bytes. Only the first is ok: a metadata-only scan finds the others by
    walking the fragment headers (past the 32 KiB a header parse reads, with more or
    bigger fragments)."""
    ok = _encapsulated(1500, frames, frame_bytes)
    no_delim = _encapsulated(1501, frames, frame_bytes)[:-8]
    cut = _encapsulated(1502, frames, frame_bytes)[: -frame_bytes // 2]
    absurd = bytearray(_encapsulated(1503, frames, frame_bytes))
    first = absurd.index(b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff") + 12  # offset table item
    second = first + 8 + struct.unpack_from("<I", absurd, first + 4)[0]
    second = second + 8 + struct.unpack_from("<I", absurd, second + 4)[0]  # 2nd fragment
    struct.pack_into("<I", absurd, second + 4, 0x7FFFFFF0)
    members = [
        ("ENC/ok.dcm", ok),
        ("ENC/no_delimiter.dcm", no_delim),
        ("ENC/cut_fragment.dcm", cut),
        ("ENC/absurd_fragment.dcm", bytes(absurd)),
    ]
    cut_reasons = ("TruncatedMemberError",)
    return HostileCase(
        "encapsulated",
        _write(folder / name, zip_bytes(members, compression=compression)),
        (
            Expect("ENC/ok.dcm", "ok", data=ok),
            Expect("ENC/no_delimiter.dcm", "error", ("sequence delimiter",)),
            Expect("ENC/cut_fragment.dcm", "error", cut_reasons),
            Expect("ENC/absurd_fragment.dcm", "error", ("declares 2147483632 bytes",)),
        ),
        "deflated" if compression == zipfile.ZIP_DEFLATED else "stored (the walk seeks)",
    )


def write_absurd_dicom(folder: Path, name: str = "absurd-dicom.zip") -> HostileCase:
    """DICOM elements that declare lengths far past their member: ``ABS/pixel.dcm`` (pixel
    data of 0x7FFFFFF0 bytes), ``ABS/private.dcm`` (a private UN element of 0x7FFFFFF0 bytes
    just before the pixels, swallowing them), ``ABS/name.dcm`` (Patient's Name declaring
    65,520 bytes); beside them a good ``ABS/ok.dcm``. Each bad one is an error row."""
    raw = dicom_bytes(1600)
    pix = raw.index(b"\xe0\x7f\x10\x00")
    pixel = bytearray(dicom_bytes(1601))
    struct.pack_into("<I", pixel, pix + 8, 0x7FFFFFF0)
    private = dicom_bytes(1602)
    element = struct.pack("<HH2sHI", 0x0019, 0x1010, b"UN", 0, 0x7FFFFFF0) + b"abcd"
    private = private[:pix] + element + private[pix:]
    name_blob = bytearray(dicom_bytes(1603))
    at = name_blob.index(b"\x10\x00\x10\x00PN")
    struct.pack_into("<H", name_blob, at + 6, 0xFFF0)
    members = [
        ("ABS/ok.dcm", raw),
        ("ABS/pixel.dcm", bytes(pixel)),
        ("ABS/private.dcm", private),
        ("ABS/name.dcm", bytes(name_blob)),
    ]
    reasons = ("declares", "TruncatedMemberError")
    return HostileCase(
        "absurd-dicom",
        _write(folder / name, zip_bytes(members)),
        (
            Expect("ABS/ok.dcm", "ok", data=raw),
            Expect("ABS/pixel.dcm", "error", reasons),
            Expect("ABS/private.dcm", "error", reasons),
            Expect("ABS/name.dcm", "error", reasons),
        ),
    )


def write_all(
    folder: Path,
    *,
    many_members: int = 70_000,
    bomb_bytes: int = 64 << 20,
    max_member_bytes: int = MAX_IN_MEMORY_BYTES,
    max_nesting_depth: int = 4,
) -> list[HostileCase]:
    """Every case above under ``folder`` (zips at its top; ``root/``, ``special/`` and
    ``unreadable/`` folders); expectations for the given limits and no symlink following.

    The symlinks of ``root/`` point at ``<folder>-outside/``, a folder *beside* ``folder``,
    so they leave ``folder`` too: a scan of ``folder`` as one input root skips them, as a
    scan of ``folder / "root"`` does.
    """
    folder.mkdir(parents=True, exist_ok=True)
    cases = [
        write_zip_slip(folder),
        write_nul_name(folder),
        write_zip_bomb(folder, inflated=bomb_bytes),
        write_absurd_size(folder),
        write_zip64(folder),
        write_zip64(folder, "zip64-streamed.zip", streamed=True),
        write_encrypted(folder),
        write_empty_zip(folder),
        write_zero_byte(folder),
        write_duplicate_names(folder),
        write_gbk_names(folder),
        write_cut_zip(folder),
        write_cut_zip(folder, "cut-streamed.zip", streamed=True, cut_member=3),
        write_crc_mismatch(folder),
        write_gzip_members(folder, bomb_bytes=bomb_bytes, max_member_bytes=max_member_bytes),
        write_nested(folder, levels=max_nesting_depth + 1, max_nesting_depth=max_nesting_depth),
        write_symlinks(folder, outside=folder.parent / f"{folder.name}-outside"),
        write_special_files(folder),
        write_unreadable(folder),
        write_encapsulated(folder),
        write_encapsulated(folder, "encaps-stored.zip", compression=zipfile.ZIP_STORED),
        write_absurd_dicom(folder),
    ]
    if many_members:
        cases.append(write_many_members(folder, members=many_members))
    return cases
