"""Gzip members: recognition, name mapping, bounded inflating (pure Python)."""

from __future__ import annotations

import gzip
import io
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest

from iac_spark.errors import CorruptZipError, MemberTooLargeError
from iac_spark.inputs.gzipped import (
    CorruptGzipError,
    content_name,
    is_gzip,
    open_gzip_member,
    read_gzip_member,
)
from iac_spark.testing import hostile

MiB = 1 << 20


def gzip_of_zeros(n: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(MiB)
    parts = [comp.compress(chunk[: min(MiB, n - i)]) for i in range(0, n, MiB)]
    return b"".join([*parts, comp.flush()])


def test_is_gzip() -> None:
    assert is_gzip(gzip.compress(b"x"))
    assert not is_gzip(b"\x1f\x8b\x07")  # not deflate
    assert not is_gzip(b"\x1f\x8b") and not is_gzip(b"") and not is_gzip(b"PK\x03\x04")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("x.dcm.gz", "x.dcm"),
        ("a.zip!s/IM0001.DCM.GZ", "a.zip!s/IM0001.DCM"),
        ("notes.txt.gz", "notes.txt"),
        ("x.dcm", "x.dcm"),
        ("dir.gz/x.dcm", "dir.gz/x.dcm"),
        (".gz", ".gz"),
        ("s/.gz", "s/.gz"),
    ],
)
def test_content_name(name: str, content: str) -> None:
    assert content_name(name) == content


def test_round_trips_and_concatenated_streams() -> None:
    data = bytes(range(256)) * 100
    assert read_gzip_member(io.BytesIO(gzip.compress(data)), where="w", max_bytes=len(data)) == data
    assert read_gzip_member(io.BytesIO(gzip.compress(b"")), where="w", max_bytes=1) == b""
    two = gzip.compress(b"abc") + gzip.compress(b"def")
    assert read_gzip_member(io.BytesIO(two), where="w", max_bytes=6) == b"abcdef"


def test_exactly_at_the_bound_is_fine_one_more_byte_is_not() -> None:
    blob = gzip.compress(b"q" * 1000)
    assert len(read_gzip_member(io.BytesIO(blob), where="w", max_bytes=1000)) == 1000
    with pytest.raises(MemberTooLargeError, match=r"w: gzip member inflates past the limit of 999"):
        read_gzip_member(io.BytesIO(blob), where="w", max_bytes=999)


def test_gzip_bomb_is_bounded() -> None:
    bomb = gzip_of_zeros(256 * MiB)
    assert len(bomb) < MiB
    tracemalloc.start()
    try:
        with pytest.raises(MemberTooLargeError, match=r"/d/a\.zip!bomb\.dcm\.gz"):
            read_gzip_member(io.BytesIO(bomb), where="/d/a.zip!bomb.dcm.gz", max_bytes=MiB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB, peak


def test_streaming_a_bomb_in_small_reads_holds_little() -> None:
    bomb = gzip_of_zeros(64 * MiB)
    tracemalloc.start()
    try:
        got = 0
        with (
            pytest.raises(MemberTooLargeError),
            open_gzip_member(io.BytesIO(bomb), where="w", max_bytes=8 * MiB) as fh,
        ):
            while chunk := fh.read(64 * 1024):
                got += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 7 * MiB < got <= 8 * MiB and peak < 2 * MiB, (got, peak)


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda b: b[: len(b) // 2], "cut short"),
        (lambda b: b[:-8] + bytes(8), "corrupt"),  # CRC and length in the trailer wrong
        (lambda b: b[:12] + b"\xff" * 16 + b[28:], "corrupt"),  # bad deflate data
        (lambda b: b + b"trailing junk", "corrupt"),
        (lambda b: b"\x1f\x8b\x08", "cut short"),
    ],
)
def test_corrupt_gzip_names_where(mangle: object, match: str) -> None:
    blob = mangle(gzip.compress(bytes(range(200)) * 50))  # type: ignore[operator]
    with pytest.raises(CorruptGzipError, match=match) as info:
        read_gzip_member(io.BytesIO(blob), where="/d/a.zip!x.dcm.gz", max_bytes=MiB)
    assert str(info.value).startswith("/d/a.zip!x.dcm.gz: ")
    assert isinstance(info.value, CorruptZipError)  # existing except clauses catch it


def test_closing_leaves_the_underlying_stream_open() -> None:
    src = io.BytesIO(gzip.compress(b"abc"))
    with open_gzip_member(src, where="w", max_bytes=10) as fh:
        assert fh.read() == b"abc"
    assert not src.closed


def test_gzip_members_of_a_zip(tmp_path: Path) -> None:
    case = hostile.write_gzip_members(tmp_path, bomb_bytes=32 * MiB, max_member_bytes=4 * MiB)
    want = {e.member: e for e in case.expect}
    with zipfile.ZipFile(case.path) as zf:
        for info in zf.infolist():
            e = want[info.filename]
            where = f"{case.path}!{info.filename}"
            with zf.open(info) as raw:
                head = raw.read(3)
            assert is_gzip(head)  # by magic, whatever the name
            with zf.open(info) as raw:
                try:
                    data = read_gzip_member(raw, where=where, max_bytes=4 * MiB)
                except (CorruptGzipError, MemberTooLargeError) as exc:
                    assert e.fate == "error" and any(r in str(exc) for r in e.reasons), exc
                    assert where in str(exc)
                else:
                    assert e.fate == "ok" and data == e.data
