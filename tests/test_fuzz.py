"""Fuzzing: the DICOM header parser, the zip reader (salvage included) and the text decoder.

The rule for every target: nothing escapes but an error row, i.e. an
:class:`iac_spark.errors.MemberError` subclass from the parse / read functions, or rows
with status ``"error"`` from a scan. Beyond that, each target checks what must hold of
what it does return (a header's DICOM JSON parses, a scan row fits its Arrow schema, a
member the scan read reads back to the same bytes, a decoded text re-encodes to its bytes)
and a few differentials (``meta`` on/off, whole-stream vs split fetches, a shared vs a
fresh JSON encoder cache, a zip scanned whole vs in two member ranges).

Inputs are mutations of seeds: pydicom's bundled test files and charset files, generated
slices (:mod:`iac_spark.testing.modality`), small zips of DICOM, notes, gzip and nested
members written with sizes in their headers, streamed (data descriptors), ZIP64, without a
central directory and behind a self-extractor stub. Mutations are byte flips, set
bytes, inserts, deletes, duplicated chunks, splices from another seed, interesting
16/32-bit values written into element headers and zip headers (lengths, VRs, sizes,
offsets, flags, methods) and cuts anywhere.

Hypothesis, not atheris: these run in the normal suite, deterministic (``derandomize``,
no example database) and bounded (``IAC_FUZZ_EXAMPLES``, default in :data:`EXAMPLES`),
failures shrink to a small input, and the strategies know the formats (element and zip
header offsets), which is what reaches the deep paths here; coverage guidance would need
a native build and a separate runner. ``make fuzz`` runs many more with random seeds
(``IAC_FUZZ_RANDOM=1``; reproduce a failure with the ``@reproduce_failure`` blob hypothesis
prints, or ``--hypothesis-seed=N``). The inputs run per target are printed in the
terminal summary.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import io
import json
import os
import re
import struct
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_charset_files, get_testdata_file

from iac_spark.dicom.compat import RawDataElement, elements
from iac_spark.dicom.dicom_json import JsonEncoderCache, dataset_to_json
from iac_spark.dicom.header import Header, parse_header
from iac_spark.dicom.rows import CONTRACT_SCHEMA, PROMOTED_SCHEMA, DicomParser
from iac_spark.errors import CorruptZipError, DicomJsonError, MemberError
from iac_spark.inputs.archive import open_archive
from iac_spark.inputs.fetch import MemberReader
from iac_spark.inputs.limits import InputLimits
from iac_spark.inputs.plan import ScanUnit
from iac_spark.inputs.scan import ScanStats, rows_to_batch, scan_schema, scan_unit
from iac_spark.testing.hostile import streamed_zip_bytes, zip_bytes
from iac_spark.testing.modality import make_ct_slice, make_mr_slice
from iac_spark.text import decode_document, make_doc_id, path_fields
from iac_spark.text.rows import TextParser

pytestmark = pytest.mark.fuzz

#: Inputs per target in the suite (about 25 s for all of them on an idle 2-core machine);
#: ``IAC_FUZZ_EXAMPLES=20000`` for a long run (``make fuzz``).
EXAMPLES = int(os.environ.get("IAC_FUZZ_EXAMPLES") or 300)
RANDOM = os.environ.get("IAC_FUZZ_RANDOM", "").lower() in ("1", "true", "yes")
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MiB = 1 << 20

# inputs run per target (hypothesis replays while shrinking count too), and how they ended
RUNS: dict[str, Counter[str]] = {}


def ran(target: str, outcome: str) -> None:
    RUNS.setdefault(target, Counter())[outcome] += 1


class _Summary:
    """Prints :data:`RUNS` in pytest's terminal summary (registered by the fixture below)."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not RUNS:
            return
        terminalreporter.section("fuzz: inputs run per target")
        mode = "random seeds" if RANDOM else "derandomized"
        terminalreporter.write_line(f"IAC_FUZZ_EXAMPLES={EXAMPLES}, {mode}")
        for target, outcomes in RUNS.items():
            total = sum(outcomes.values())
            detail = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
            terminalreporter.write_line(f"  {target}: {total} inputs ({detail})")


@pytest.fixture(scope="module", autouse=True)
def _print_counts(request: pytest.FixtureRequest) -> None:
    pm = request.config.pluginmanager
    if not pm.has_plugin("iac-fuzz-summary"):
        pm.register(_Summary(), "iac-fuzz-summary")


def member_error_names() -> set[str]:
    out: set[str] = set()
    todo: list[type] = [MemberError]
    while todo:
        cls = todo.pop()
        out.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return out


# ---------------------------------------------------------------------------- mutations
I8 = (0x00, 0x01, 0x08, 0x4B, 0x50, 0x7F, 0x80, 0xFE, 0xFF)
I16 = (0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)
I32 = (0, 1, 2, 7, 8, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFF0, 0x7FFFFFFF, 0x80000000,
       0xFFFFFFFE, 0xFFFFFFFF)  # fmt: skip
VRS = (b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
       b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST",
       b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV", b"XX", b"\0\0",
       b"ox")  # fmt: skip
#: In-place changes twice as likely as ones that shift what follows (a shift cuts the
#: element running to the end, the pixel data, short: one more TruncatedMemberError).
OPS = ("flip", "set", "u16", "u32", "vr") * 2 + ("insert", "delete", "dup", "splice")


@st.composite
def mutated(
    draw: st.DrawFn,
    blob: bytes,
    *,
    hot: Sequence[int] = (),
    focus: tuple[int, int] | None = None,
    others: Sequence[bytes] = (),
    max_ops: int = 8,
) -> bytes:
    """``blob`` with up to ``max_ops`` mutations, then maybe cut short.

    Positions are anywhere, in the ``focus`` range of bytes (a DICOM header after its
    preamble: mostly there), or at a ``hot`` offset (an element or zip header) plus a few
    bytes, where the 16/32-bit values land on lengths, sizes, offsets, flags and VRs.
    """
    b = bytearray(blob)
    lo, hi = focus or (0, len(b))

    def spread(start: int, stop: int) -> int:
        """A position in [start, stop): hypothesis draws small integers far more often
        than large ones, so they are scattered over the range (0 stays at ``start``)."""
        x = draw(st.integers(0, 2**32 - 1))
        return start + ((x * 0x9E3779B1) >> 7) % max(1, stop - start)

    def at(width: int = 1) -> int:
        n = len(b)
        where = draw(st.integers(0, 3))
        if where == 3 and hot:
            pos = draw(st.sampled_from(hot)) + draw(st.integers(0, 15))
        elif where in (1, 2) and focus and min(lo, n - 1) < min(hi, n):
            pos = spread(min(lo, n - 1), min(hi, n))
        else:
            pos = spread(0, n)
        return max(0, min(pos, n - width))

    for _ in range(draw(st.integers(0, max_ops))):
        if not b:
            break
        op = draw(st.sampled_from(OPS))
        little = "<" if draw(st.booleans()) else ">"
        if op == "flip":
            b[at()] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            b[at()] = draw(st.sampled_from(I8))
        elif op == "u16" and len(b) >= 2:
            struct.pack_into(little + "H", b, at(2), draw(st.sampled_from(I16)))
        elif op == "u32" and len(b) >= 4:
            struct.pack_into(little + "I", b, at(4), draw(st.sampled_from(I32)))
        elif op == "vr" and hot and len(b) >= 6:
            i = min(draw(st.sampled_from(hot)) + 4, len(b) - 2)
            b[i : i + 2] = draw(st.sampled_from(VRS))
        elif op == "insert":
            i = at()
            b[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            i = at()
            del b[i : i + draw(st.integers(1, 64))]
        elif op == "dup":
            i, j = at(), at()
            b[j:j] = b[i : i + draw(st.integers(1, 256))]
        elif op == "splice" and others:
            src = draw(st.sampled_from(others))
            if src:
                i = draw(st.integers(0, len(src) - 1))
                j = at()
                b[j : j + 32] = src[i : i + draw(st.integers(1, 64))]
    if b and draw(st.integers(0, 5)) == 0:  # cut short, mostly past the protected prefix
        del b[spread(min(lo, len(b)), len(b) + 1) if draw(st.integers(0, 4)) else at() :]
    return bytes(b)


# ---------------------------------------------------------------------------- DICOM seeds
PYDICOM_SEEDS = (
    "CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
    "MR_small_expb.dcm", "MR_small_padded.dcm", "MR_truncated.dcm", "ExplVR_BigEndNoMeta.dcm",
    "ExplVR_LitEndNoMeta.dcm", "no_meta_group_length.dcm", "meta_missing_tsyntax.dcm",
    "nested_priv_SQ.dcm", "priv_SQ.dcm", "UN_sequence.dcm", "image_dfl.dcm", "JPEG2000.dcm",
    "JPEG2000-embedded-sequence-delimiter.dcm", "SC_rgb_rle.dcm", "SC_rgb_rle_2frame.dcm",
    "rtplan.dcm", "rtplan_truncated.dcm", "rtstruct.dcm", "test-SR.dcm", "reportsi.dcm",
    "reportsi_with_empty_number_tags.dcm", "badVR.dcm", "empty_charset_LEI.dcm",
    "rtdose_1frame.dcm", "SC_rgb_small_odd_big_endian.dcm", "emri_small_jpeg_2k_lossless.dcm",
)  # fmt: skip
CHARSET_SEEDS = ("chrH31.dcm", "chrX1.dcm", "chrSQEncoding.dcm", "chrJapMulti.dcm", "chrRuss.dcm")


def _encapsulated(raw: bytes, frames: int = 3) -> bytes:
    """``raw`` re-encoded as JPEG Baseline with ``frames`` small fragments and its delimiter."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    ds = pydicom.dcmread(io.BytesIO(raw))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([bytes([f]) * (40 + 16 * f) for f in range(frames)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.NumberOfFrames = frames
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@functools.cache
def ct_slice() -> bytes:
    return make_ct_slice(
        patient_id="FUZZ-1", study_uid="1.2.826.0.1.3680043.8.498.77.1",
        series_uid="1.2.826.0.1.3680043.8.498.77.1.1", instance_number=1,
        rng=np.random.default_rng(7), size=16,
    )  # fmt: skip


@functools.cache
def dicom_seeds() -> tuple[bytes, ...]:
    out: list[bytes] = []
    for name in PYDICOM_SEEDS:
        path = get_testdata_file(name, download=False)  # bundled files only: no network
        if path is not None:
            out.append(Path(str(path)).read_bytes())
    charsets = {Path(p).name: p for p in get_charset_files()}
    out += [Path(charsets[n]).read_bytes() for n in CHARSET_SEEDS if n in charsets]
    ct = ct_slice()
    mr = make_mr_slice(
        patient_id="FUZZ-2", study_uid="1.2.826.0.1.3680043.8.498.77.2",
        series_uid="1.2.826.0.1.3680043.8.498.77.2.1", instance_number=2,
        rng=np.random.default_rng(8), size=16,
    )  # fmt: skip
    out += [ct, mr, _encapsulated(ct), ct[132:]]  # the last: no preamble, starts at (0002,...)
    assert len(out) >= 30, "pydicom's bundled test files are missing"
    return tuple(out)


def _pixel_offset(blob: bytes) -> int:
    """Where the top-level pixel data element starts (or the end): the header ends there."""
    for tag in (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10"):
        i = blob.rfind(tag)
        if i > 0:
            return i
    return len(blob)


def _hot_spots(blob: bytes) -> list[int]:
    """Offsets of (probable) element headers: a VR after a 4-byte tag, items and delimiters,
    and the raw elements pydicom finds (implicit VR ones included)."""
    end = min(len(blob), _pixel_offset(blob) + 64)
    vrs = set(VRS[:-3])
    hot = {i for i in range(0, end - 6) if blob[i + 4 : i + 6] in vrs}
    for marker in (
        b"\xfe\xff\x00\xe0",
        b"\xfe\xff\xdd\xe0",
        b"\xfe\xff\x0d\xe0",
        b"\xff\xfe\xe0\x00",
    ):
        i = blob.find(marker)
        while 0 <= i < end:
            hot.add(i)
            i = blob.find(marker, i + 1)
    try:
        ds = pydicom.dcmread(io.BytesIO(blob), force=True, stop_before_pixels=True)
        for elem in elements(ds).values():
            if type(elem) is RawDataElement and elem.is_implicit_VR:
                hot.add(max(0, elem.value_tell - 8))
    except Exception:
        pass
    return sorted(hot)


@functools.cache
def dicom_spots() -> tuple[tuple[bytes, tuple[int, ...], tuple[int, int]], ...]:
    return tuple(
        (b, tuple(_hot_spots(b)), (132 if b[128:132] == b"DICM" else 0, _pixel_offset(b) + 64))
        for b in dicom_seeds()
    )


@st.composite
def dicom_inputs(draw: st.DrawFn) -> bytes:
    """A mutated seed (mostly), or random bytes behind a preamble or a plausible first tag."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        body = draw(st.binary(max_size=600))
        lead = draw(st.sampled_from([b"\0" * 128 + b"DICM", b"\x02\x00", b"\x08\x00", b"\x00\x08"]))
        return lead + body
    seeds = dicom_spots()
    blob, hot, focus = draw(st.sampled_from(seeds))
    return draw(mutated(blob, hot=hot, focus=focus, others=[s[0] for s in seeds[:6]], max_ops=4))


# ---------------------------------------------------------------------------- target 1: headers
class _Sequential:
    """``fetch(n)`` over bytes that cannot seek (a deflated member, a gzip stream)."""

    def __init__(self, data: bytes, start: int) -> None:
        self._fh = io.BytesIO(data)
        self._fh.seek(start)

    def __call__(self, n: int) -> bytes:
        assert n >= 0, f"fetch({n})"
        return self._fh.read(n)


class _Seekable(_Sequential):
    """``fetch(n)`` plus ``skip(n)`` (a bare file, a stored member)."""

    def skip(self, n: int) -> None:
        assert n >= 0, f"skip({n})"
        self._fh.seek(n, io.SEEK_CUR)


_HEADER_SCHEMA = pa.schema([*CONTRACT_SCHEMA, *PROMOTED_SCHEMA])
_HEX8 = re.compile(r"[0-9A-F]{8}")


def _header_fits(h: Header) -> None:
    """Every field has the type its Arrow column needs, and ``meta`` is DICOM JSON."""
    rows_to_batch([tuple(getattr(h, n) for n in _HEADER_SCHEMA.names)], _HEADER_SCHEMA)
    if h.meta is not None:
        obj = json.loads(h.meta)
        assert isinstance(obj, dict)
        for key, value in obj.items():
            assert _HEX8.fullmatch(key), key
            assert isinstance(value, dict) and isinstance(value.get("vr"), str), (key, value)


def _parse(blob: bytes, size: int, mode: str, where: str, **kw: Any) -> Header | MemberError:
    if mode == "whole":
        fetch: Callable[[int], bytes] = _Seekable(blob, 0)
        head = b""
    else:
        head = blob[:132]
        fetch = (_Seekable if mode == "split-seekable" else _Sequential)(blob, len(head))
    try:
        return parse_header(fetch, size, where, head=head, **kw)
    except MemberError as exc:
        assert where in str(exc), f"the error does not name {where!r}: {exc}"
        return exc


def _fields(h: Header) -> dict[str, Any]:
    return {k: v for k, v in vars_of(h).items() if k != "meta"}


def vars_of(h: Header) -> dict[str, Any]:
    return {name: getattr(h, name) for name in h.__dataclass_fields__}


@FUZZ
@given(
    blob=dicom_inputs(),
    extra=st.sampled_from([0, 0, 0, 0, 0, 1, 7, 8, 64, 4096, MiB, 0x7FFFFFF0]),
    mode=st.sampled_from(["whole", "split-seekable", "split-sequential"]),
    promoted=st.booleans(),
)
def test_fuzz_parse_header(blob: bytes, extra: int, mode: str, promoted: bool) -> None:
    """Mutated headers: a Header that fits its columns, or a MemberError naming the member.

    The same bytes read whole (``meta=True``) and split as the scan reads them
    (``meta=False``, maybe without seeking) agree: the same fields, or the same error
    class, or only the JSON encoder fails (``DicomJsonError``). ``extra``: the zip
    directory declares more bytes than the member holds.
    """
    size = len(blob) + extra
    where = "/fuzz/in.zip!s/IM0001.dcm"
    full = _parse(blob, size, "whole", where, meta=True, promoted=promoted)
    bare = _parse(blob, size, mode, where, meta=False, promoted=promoted)
    ran("parse_header", type(full).__name__)
    if isinstance(bare, Header):
        _header_fits(bare)
        assert bare.meta is None
        if isinstance(full, Header):
            _header_fits(full)
            assert _fields(full) == _fields(bare)
        else:
            assert isinstance(full, DicomJsonError), full
    else:
        assert type(full) is type(bare), (full, bare)
    if not promoted and isinstance(bare, Header):
        assert all(getattr(bare, n) is None for n in PROMOTED_SCHEMA.names)


SHARED_CACHE = JsonEncoderCache()


@FUZZ
@given(blob=dicom_inputs(), stop=st.booleans(), defer=st.sampled_from([None, 64, 1024]))
def test_fuzz_dataset_to_json(blob: bytes, stop: bool, defer: int | None) -> None:
    """Datasets pydicom reads from mutated bytes: valid JSON or DicomJsonError, and the
    same JSON from a long-lived cache shared by every input as from a fresh one."""
    try:
        ds = pydicom.dcmread(
            io.BytesIO(blob), force=True, stop_before_pixels=stop, defer_size=defer
        )
    except Exception:  # pydicom's own refusal: not our code
        ran("dataset_to_json", "pydicom refused")
        return
    try:
        fresh = dataset_to_json(ds, cache=JsonEncoderCache())
    except DicomJsonError:
        ran("dataset_to_json", "DicomJsonError")
        with pytest.raises(DicomJsonError):
            dataset_to_json(ds, cache=SHARED_CACHE)
        return
    ran("dataset_to_json", "ok")
    assert isinstance(json.loads(fresh), dict)
    assert dataset_to_json(ds, cache=SHARED_CACHE) == fresh
    assert dataset_to_json(ds, cache=JsonEncoderCache()) == fresh  # ds was not modified


# ---------------------------------------------------------------------------- zip seeds
NOTE = "XJ/Patient_00000001/2024-01-01/入院记录_20240101000000.txt"


def _strip_directory(blob: bytes) -> bytes:
    i = blob.find(b"PK\x01\x02")
    return blob[:i] if i > 0 else blob


@functools.cache
def zip_seeds() -> tuple[bytes, ...]:
    ct = ct_slice()
    encaps = _encapsulated(ct)
    small = Path(str(get_testdata_file("rtplan.dcm", download=False))).read_bytes()
    members = [
        ("s/IM0001.dcm", ct),
        ("s/IM0002.dcm", encaps),
        ("s/rt.dcm", small),
        (NOTE, "主诉：发热两天。体温38.5℃".encode("gb18030")),
        ("XJ/P2/2024-02-02/病程记录_20240202080000.txt", "\ufeffBP 120/80 mmHg".encode()),
        ("LICENSE.txt", b"CC BY 4.0"),
        ("s/IM0003.dcm.gz", gzip.compress(small, mtime=0)),
        ("empty.dcm", b""),
        ("dir/", b""),
        ("s/IM0001.dcm", small),  # a repeated name: s/IM0001.dcm#2
    ]
    few = members[:4]
    inner = zip_bytes(few)
    stored = zipfile.ZIP_STORED
    seeds = [
        zip_bytes(members),
        zip_bytes(members, compression=stored),
        streamed_zip_bytes(few),
        streamed_zip_bytes(few, compression=stored),
        zip_bytes(few, force_zip64=True),
        streamed_zip_bytes(few[:2], force_zip64=True),
        zip_bytes([("n/inner.zip", inner), ("n/x.dcm", small)], compression=stored),
        zip_bytes([("l1.zip", zip_bytes([("l2.zip", inner)]))]),
        zip_bytes([("g/inner.zip.gz", gzip.compress(inner, mtime=0))]),
        b"#!/bin/sh\nexit 0\n" + zip_bytes(few),  # a self-extractor stub before the archive
    ]
    seeds += [_strip_directory(seeds[0]), _strip_directory(seeds[2])]  # the salvage walk
    return tuple(seeds)


_ZIP_SIGS = (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x07\x08", b"PK\x06\x06",
             b"PK\x06\x07")  # fmt: skip


def _zip_spots(blob: bytes) -> tuple[int, ...]:
    """Header offsets, and the fields 16 bytes on (the random offset adds up to 15)."""
    hot: set[int] = set()
    for sig in _ZIP_SIGS:
        i = blob.find(sig)
        while i >= 0:
            hot.update((i, i + 16, i + 28))
            i = blob.find(sig, i + 1)
    return tuple(sorted(hot))


@functools.cache
def zip_spots() -> tuple[tuple[bytes, tuple[int, ...]], ...]:
    return tuple((b, _zip_spots(b)) for b in zip_seeds())


@st.composite
def zip_inputs(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 19)) == 0:
        return b"PK\x03\x04" + draw(st.binary(max_size=400))
    seeds = zip_spots()
    blob, hot = draw(st.sampled_from(seeds))
    return draw(mutated(blob, hot=hot, others=[s[0] for s in seeds[:3]], max_ops=4))


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="iac-fuzz-") as d:
        yield Path(d)


# ---------------------------------------------------------------------------- target 2: zips
LIMITS = InputLimits(max_member_bytes=4 * MiB, max_nesting_depth=2)
PARSERS = {
    "dicom-meta": lambda: DicomParser(meta=True),
    "dicom-promoted": lambda: DicomParser(meta=False, promoted=True),
    "text": lambda: TextParser(),
}
_ERROR_NAMES = member_error_names()


def _scan(path: str, parser: Any, *, content: bool, start: int = 0, stop: int | None = None
          ) -> tuple[list[tuple[Any, ...]], ScanStats]:  # fmt: skip
    stats = ScanStats()
    rows = list(
        scan_unit(
            ScanUnit(path, "zip", start, stop),
            parser,
            content=content,
            include_skipped=True,
            stats=stats,
            limits=LIMITS,
        )
    )
    return rows, stats


def _check_rows(path: str, rows: list[tuple[Any, ...]], stats: ScanStats, parser: Any,
                content: bool) -> None:  # fmt: skip
    tail = -3 if content else -2
    fates = Counter(r[tail] for r in rows)
    assert set(fates) <= {"ok", "error", "skipped"}, fates
    for r in rows:
        assert r[0] == path
        error = r[tail + 1]
        if r[tail] == "error":
            assert error and error.split(":", 1)[0] in _ERROR_NAMES, error
            assert path in error, error
        else:
            assert error is None
        if r[tail] == "ok":
            assert isinstance(r[2], int) and r[2] >= 0 and isinstance(r[3], int), r[:4]
    c = stats.counts.get(path)
    if rows:
        assert c is not None
        assert c.members == c.ok + c.errors + c.skipped == len(rows)
        assert (c.ok, c.errors, c.skipped) == (fates["ok"], fates["error"], fates["skipped"])
    rows_to_batch(rows, scan_schema(parser, content=content))  # every row fits its columns


@FUZZ
@given(blob=zip_inputs(), which=st.sampled_from(sorted(PARSERS)), cut=st.integers(0, 12))
def test_fuzz_scan_unit(scratch: Path, blob: bytes, which: str, cut: int) -> None:
    """Mutated zips: the scan yields rows and never raises; per source members == ok +
    errors + skipped; two member ranges give the rows of the whole; every member a content
    scan read reads back through ``MemberReader`` as the same bytes, and every one a
    metadata scan found ok reads back with its size and CRC-32, or is a MemberError."""
    path = str(scratch / "fuzz.zip")
    Path(path).write_bytes(blob)
    _scan_checks(path, PARSERS[which](), cut)


def _scan_checks(path: str, parser: Any, cut: int) -> None:
    meta_rows, meta_stats = _scan(path, parser, content=False)
    _check_rows(path, meta_rows, meta_stats, parser, False)
    full_rows, full_stats = _scan(path, parser, content=True)
    _check_rows(path, full_rows, full_stats, parser, True)
    ran("scan_unit", "rows" if meta_rows else "no rows")
    assert [r[:2] for r in meta_rows] == [r[:2] for r in full_rows]  # the same members
    for r in meta_rows:
        ran("scan_unit members", r[-2])

    with open_archive(path, path, LIMITS) as arch:
        n = len(arch.members)
    if n:  # as the planner cuts a zip: a first unit of at least one member, then the rest
        k = max(1, min(cut, n))
        first, s1 = _scan(path, parser, content=False, stop=k)
        second, s2 = _scan(path, parser, content=False, start=k)
        assert Counter(map(repr, first + second)) == Counter(map(repr, meta_rows))
        both = s1.total
        both.add(s2.total)
        assert both == meta_stats.total

    with MemberReader(limits=LIMITS) as reader:
        for r in full_rows:
            if r[-3] == "ok":
                path_, member, size, crc = r[:4]
                assert reader.read(path_, member, size, crc) == r[-1], (member, r[-1][:16])
        for r in meta_rows:
            if r[-2] == "ok":
                path_, member, size, crc = r[:4]
                try:
                    data = reader.read(path_, member, size, crc)
                except MemberError:
                    continue
                assert len(data) == size and zlib.crc32(data) == crc


def _read_chunked(stream: io.BufferedReader, sizes: Sequence[int]) -> bytes:
    out = bytearray()
    for i in range(1 << 16):
        chunk = stream.read(sizes[i % len(sizes)])
        if not chunk:
            return bytes(out)
        out += chunk
    raise AssertionError("a member stream that does not end")


@FUZZ
@given(
    blob=zip_inputs(),
    salvage=st.booleans(),
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=4),
)
def test_fuzz_open_archive(scratch: Path, blob: bytes, salvage: bool, sizes: list[int]) -> None:
    """``open_archive`` never raises; each member reads whole (its declared size, CRC-checked)
    or raises MemberError, and reading it in odd chunks gives the same bytes or error.
    ``salvage``: the same bytes without their central directory, from memory."""
    where = str(scratch / "arch.zip")
    if salvage:
        source: str | io.BytesIO = io.BytesIO(_strip_directory(blob))
    else:
        Path(where).write_bytes(blob)
        source = where
    with open_archive(source, where, LIMITS) as arch:
        members = list(arch.members)
        problem = arch.problem
        if problem is not None:
            assert isinstance(problem.error, MemberError)
            assert where in str(problem.error)
        ran(
            "open_archive",
            "salvaged" if arch.salvaged else "refused" if arch.refused else "directory",
        )
        names = [m.name for m in members]
        assert len(set(names)) == len(names), names  # (path, member) is a key
        for m in members:
            try:
                whole: bytes | type = arch.read(m)
            except MemberError as exc:
                assert where in str(exc)
                whole = type(exc)
                ran("open_archive members", "error")
            else:
                assert isinstance(whole, bytes) and len(whole) == m.size
                assert zlib.crc32(whole) == m.crc32
                ran("open_archive members", "ok")
            try:
                with arch.open(m) as stream:
                    chunked: bytes | type = _read_chunked(stream, sizes)
            except MemberError as exc:
                chunked = type(exc)
            if isinstance(whole, bytes):
                assert chunked == whole, m.name
            # a member that fails whole may read in chunks when what fails is the size
            # bound of Archive.read (maxMemberBytes), never otherwise
            elif isinstance(chunked, bytes):
                assert m.size > LIMITS.max_member_bytes, (m.name, whole)


# ---------------------------------------------------------------------------- target 3: text
AUTO_ENCODINGS = ("utf-8", "utf-8-sig", "gb18030", "utf-16-le", "utf-16-be", "utf-32-le",
                  "utf-32-be")  # fmt: skip
FORCED = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be",
          "gb18030", "gbk", "gb2312", "big5", "cp932", "euc-kr", "latin-1", "cp1252", "ascii",
          "utf-7", "iso2022_jp", "hz")  # fmt: skip
BOMS = {"utf-8-sig": codecs.BOM_UTF8, "utf-16-le": codecs.BOM_UTF16_LE,
        "utf-16-be": codecs.BOM_UTF16_BE, "utf-32-le": codecs.BOM_UTF32_LE,
        "utf-32-be": codecs.BOM_UTF32_BE}  # fmt: skip
#: Codecs whose decoding is one-to-one on the bytes they accept: a decoded text re-encodes
#: to the same bytes. The others map several byte strings to one text (Big5 and CP932 have
#: duplicate code points; UTF-7, ISO-2022-JP and HZ have several escapes for one text).
ROUND_TRIP = {"utf-8", "utf-8-sig", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be",
              "gb18030", "gbk", "gb2312", "euc_kr", "latin_1", "iso8859-1", "cp1252", "ascii"}  # fmt: skip

_NOTE_TEXT = st.text(
    st.one_of(
        st.sampled_from(list("主诉发热两天体温血压酶咳嗽。，：℃°×µ\t\n\r ABCxyz0123/.-")),
        st.characters(categories=("L", "N", "P", "S", "Zs", "Mn")),
        st.characters(categories=("Cc", "Co", "Cf")),  # controls, private use, BOMs
    ),
    min_size=1,
    max_size=60,
)


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=200))
    text = draw(_NOTE_TEXT)
    enc = draw(st.sampled_from((*AUTO_ENCODINGS, "big5", "cp932", "latin-1", "utf-7")))
    data = text.encode(enc.replace("-sig", ""), errors="ignore")
    if enc in BOMS and draw(st.booleans()):
        data = BOMS[enc] + data
    if kind >= 4:
        data = draw(mutated(data, max_ops=3)) if data else data
    return data


def _bom_len(data: bytes, encoding: str) -> int:
    bom = BOMS.get(encoding)
    return len(bom) if bom is not None and data.startswith(bom) else 0


@FUZZ
@given(data=documents(), encoding=st.one_of(st.just("auto"), st.sampled_from(FORCED)))
def test_fuzz_decode_document(data: bytes, encoding: str) -> None:
    """Random and mangled notes: a Decoded whose text re-encodes to the bytes (BOM off)
    under the reported encoding, or a MemberError naming the document."""
    where = "/fuzz/notes.zip!XJ/P1/2024-01-01/入院记录_20240101000000.txt"
    try:
        d = decode_document(data, where, encoding=encoding)
    except MemberError as exc:
        assert where in str(exc), exc
        ran("decode_document", type(exc).__name__)
        return
    ran("decode_document", f"ok {d.encoding}" if encoding == "auto" else "ok forced")
    assert d.n_chars == len(d.text) and d.text and not d.text.isspace()
    assert "\x00" not in d.text
    codec = "utf-8" if d.encoding == "utf-8-sig" else d.encoding
    if encoding == "auto":
        assert d.encoding in AUTO_ENCODINGS
    if d.encoding in ROUND_TRIP or codecs.lookup(codec).name in ROUND_TRIP:
        assert d.text.encode(codec) == data[_bom_len(data, d.encoding) :], (d.encoding, data)
    else:  # still no mangling: the codec itself reads the same text
        assert codecs.decode(data[_bom_len(data, d.encoding) :], codec) == d.text


_PATH_ALPHABET = st.sampled_from(list("/\\!_.-0123456789XJPtxTX张三入院记录 aZ"))
_COMPONENT = st.text(
    st.sampled_from(list("XJPatient_0123456789-张三入院记录 .")), min_size=1, max_size=12
)
_ODD_COMPONENT = st.text(st.sampled_from(list("_.!\\/ \t\x00\u200b\ufeffé")), max_size=4)
PATTERNS = (
    None,  # the default
    r"(?P<patient_id>[^/]+)/(?P<encounter>[^/]*)/(?P<doc_type>[^/_]*)_(?P<doc_timestamp>\d*)\.txt",
    r"(?:(?P<institution>[^/]+)/)?(?P<patient_id>[^/]+)/(?P<encounter>[^/]+)/(?P<doc_type>.+?)-(?P<doc_timestamp>\d{8})\.(?i:txt)",
)


DEFECTS = ("bad month", "13 digits", "no .txt", ".txt.gz", "dash", "empty folder", "odd folder",
           "3 folders", "bang in name")  # fmt: skip


@st.composite
def note_paths(draw: st.DrawFn) -> tuple[str, tuple[str, ...] | None]:
    """A path and, for one in the default layout, the fields it must give (None: unknown).

    Random text, or ``[lead/]INST/PID/ENC/TYPE_TS.txt`` with clean components (``/`` or
    ``\\`` between them, maybe inside a nested zip), then maybe one defect."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.text(_PATH_ALPHABET, max_size=80) | st.text(max_size=40)), None
    lead = draw(st.lists(_COMPONENT, max_size=2))
    inst, pid, enc, dtype = (draw(_COMPONENT) for _ in range(4))
    ts = draw(
        st.sampled_from(["20240101000000", "20240229235959", "19991231235959", "20300615120030"])
    )
    ext = draw(st.sampled_from([".txt", ".TXT", ".Txt"]))
    sep = draw(st.sampled_from(["/", "/", "\\"]))
    defect = draw(st.sampled_from((None,) * len(DEFECTS) + DEFECTS))
    if defect == "bad month":
        ts = ts[:4] + "13" + ts[6:]
    elif defect == "13 digits":
        ts = ts[:-1]
    elif defect == "no .txt":
        ext = ""
    elif defect == ".txt.gz":
        ext += ".gz"
    elif defect == "empty folder":
        enc = ""
    elif defect == "odd folder":
        enc = draw(_ODD_COMPONENT)
    elif defect == "bang in name":
        dtype = "a!" + dtype
    parts = [*lead, inst, pid, enc, f"{dtype}{'-' if defect == 'dash' else '_'}{ts}{ext}"]
    if defect == "3 folders":
        parts = parts[-3:]
    path = sep.join(parts)
    if draw(st.booleans()):
        path = "outer.zip!" + path
    expect = None if defect is not None else (inst, pid, enc, dtype, ts)
    return path, expect


@FUZZ
@given(case=note_paths(), pattern=st.sampled_from(PATTERNS))
def test_fuzz_path_fields(case: tuple[str, tuple[str, ...] | None], pattern: str | None) -> None:
    """Random paths: PathFields whose required fields are non-empty pieces of the path and
    whose doc_id is made of them, or a PathPatternMismatchError naming the document; a path
    in the default layout gives exactly its components."""
    path, expect = case
    where = f"/fuzz/notes.zip!{path}"
    try:
        f = path_fields(path, where=where) if pattern is None else path_fields(path, pattern, where)
    except MemberError as exc:
        assert where in str(exc), exc
        assert pattern is not None or expect is None, (path, exc)
        ran("path_fields", type(exc).__name__)
        return
    ran("path_fields", "ok")
    name = path.rsplit("!", 1)[-1].replace("\\", "/")
    for value in (f.patient_id, f.encounter, f.doc_type, f.doc_timestamp):
        assert value and value in name, (value, name)
    assert f.institution is None or f.institution in name
    assert f.doc_id == make_doc_id(f.patient_id, f.encounter, f.doc_type, f.doc_timestamp)
    if pattern is None:
        assert "/" not in f.patient_id + f.encounter + f.doc_type
        assert re.fullmatch(r"\d{14}", f.doc_timestamp)
        tail = f"{f.patient_id}/{f.encounter}/{f.doc_type}_{f.doc_timestamp}.txt"
        assert name.lower().endswith(tail.lower())
        if expect is not None:
            got = (f.institution, f.patient_id, f.encounter, f.doc_type, f.doc_timestamp)
            assert got == expect, (path, got)


# ---------------------------------------------------------------------------- found by fuzzing
def _stored_zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


# A one-member stored zip ("a.dcm" holding b"x") without its first byte: the file no longer
# starts with a local header, and locate_central_directory (inputs/salvage.py, _eocd_is_ours)
# used to accept the directory with concat = -1 (a member header_offset of -1); now it refuses
# it and the archive is a CorruptZipError.
NEGATIVE_OFFSET_ZIP = bytes.fromhex(
    "4b0304140000000000000021588316dc8c010000000100000005000000612e64636d78504b0102140314"
    "0000000000000021588316dc8c0100000001000000050000000000000000000000800100000000612e64"
    "636d504b0506000000000100010033000000240000000000"
)


def test_the_cut_zip_is_what_the_reproductions_say() -> None:
    assert _stored_zip("a.dcm", b"x")[1:] == NEGATIVE_OFFSET_ZIP


def test_nested_zip_with_a_negative_header_offset_is_an_error_row(tmp_path: Path) -> None:
    # found by test_fuzz_scan_unit: a ValueError "negative seek value -1" escaped scan_unit
    path = tmp_path / "outer.zip"
    path.write_bytes(_stored_zip("inner.zip", NEGATIVE_OFFSET_ZIP))
    stats = ScanStats()
    rows = list(scan_unit(ScanUnit(str(path), "zip"), DicomParser(), stats=stats))
    assert [(r[1], r[-2]) for r in rows] == [("inner.zip", "error")]
    assert rows[0][-1].startswith("CorruptZipError: ")
    assert rows[0][-1].endswith("outer.zip!inner.zip: not a zip archive (no local header at 0)")
    assert stats.counts[str(path)].errors == 1


def test_a_cut_front_is_a_corrupt_zip_not_a_disk_error(tmp_path: Path) -> None:
    # found by test_fuzz_open_archive: OSError [Errno 22] (a negative seek) was reported as
    # UnreadableFileError, as if the disk had failed
    path = tmp_path / "cut.zip"
    path.write_bytes(NEGATIVE_OFFSET_ZIP)
    with open_archive(str(path), str(path)) as arch:
        assert list(arch.members) == []
        assert arch.problem is not None
        assert isinstance(arch.problem.error, CorruptZipError)
        assert "not a zip archive" in str(arch.problem.error)
    rows = list(scan_unit(ScanUnit(str(path), "zip"), DicomParser(), stats=ScanStats()))
    assert [(r[-2], r[-1].split(":")[0]) for r in rows] == [("error", "CorruptZipError")]


@FUZZ
@given(
    data=st.one_of(st.binary(max_size=4096), _NOTE_TEXT.map(lambda t: t.encode("utf-8"))),
    level=st.integers(0, 9),
    first=st.integers(1, 5000),
)
def test_fuzz_valid_members_read_back_whole(data: bytes, level: int, first: int) -> None:
    """Unmutated zips: every member reads back byte-exact, whole or as a first read of any
    size and the rest (a differential against the bytes written; the case bench/text.py found
    was a first read of 256 bytes with zlib still holding output back)."""
    buf = io.BytesIO()
    method = zipfile.ZIP_STORED if level == 0 else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buf, "w", method, compresslevel=level or None) as zf:
        zf.writestr("note.txt", data)
    with open_archive(io.BytesIO(buf.getvalue()), "/valid.zip") as arch:
        [m] = arch.members
        assert arch.read(m) == data
        with arch.open(m) as stream:
            assert stream.read(first) + stream.read() == data
    ran("valid members", "ok")


def _zip64_local_member(name: bytes, size: int) -> bytes:
    """A stored member's local header whose ZIP64 extra field declares ``size`` (and 4
    compressed bytes, which follow); no central directory (the salvage walk reads it)."""
    extra = struct.pack("<HHQQ", 0x0001, 16, size, 4)
    header = struct.pack(
        "<4sHHHHHIIIHH", b"PK\x03\x04", 45, 0, 0, 0, 0, 0, 0xFFFFFFFF, 0xFFFFFFFF,
        len(name), len(extra),
    )  # fmt: skip
    return header + name + extra + b"DICM"


def test_a_zip64_size_beyond_int64_is_an_error_row(tmp_path: Path) -> None:
    # found by make fuzz (random seeds): a ZIP64 size of 0xFF00...A2 reached the scan's int64
    # size column, and building the Arrow batch raised OverflowError (a failed scan task)
    path = tmp_path / "huge.zip"
    path.write_bytes(_zip64_local_member(b"s/IM0002.dcm", (1 << 64) - 94))
    parser = DicomParser()
    rows = list(scan_unit(ScanUnit(str(path), "zip"), parser, stats=ScanStats()))
    assert [(r[1], r[-2]) for r in rows] == [("s/IM0002.dcm", "error")]
    assert "declared size 18446744073709551522 is beyond any file's size" in rows[0][-1]
    rows_to_batch(rows, scan_schema(parser, content=False))  # fits the columns
