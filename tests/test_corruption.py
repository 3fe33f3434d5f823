"""Corruption is always caught: a flipped byte anywhere in a real pack, a missing pack.

Real packs of three layouts (``dicom_p10`` and ``clinical_text`` from the build core,
``dicom_patient`` from the adapter's builder), built on the local executor. Each region of a
pack — the header in use, the header's padding, the slide table, the index table, the data —
gets seeded byte flips; ``verify`` must report every one naming the pack (and, where the flip
changes what a reader sees, the section or row), and never crash. The readers
(:class:`~iac_spark.packing.merge.VerifiedPack`, the ``iac`` Spark source) must raise an error
naming pack and row instead of returning a wrong payload.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from iatro.iac import PackReader

import iac_spark.catalog as cat
from iac_spark.catalog.store import DeltaRsStore
from iac_spark.errors import CorruptPackError, MissingPackError
from iac_spark.packing.reading import VerifiedPack
from iac_spark.packing.shard import file_crc32c
from iac_spark.testing.corpus import CorpusSpec, generate_corpus
from iac_spark.testing.textcorpus import TextCorpusSpec, generate_text_corpus

FLIPS_PER_REGION = 3


@pytest.fixture(scope="module")
def outs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One built OUT per layout (kept pristine: tests flip bytes in copies)."""
    root = tmp_path_factory.mktemp("corrupt")
    dicom = generate_corpus(
        root / "dicom",
        CorpusSpec(patients=2, ct_slices=3, mr_slices=2, ct_size=64, mr_size=32, seed=29),
    )
    notes = generate_text_corpus(root / "notes", TextCorpusSpec(patients=3, docs_per_patient=3))
    assert notes.docs
    built = {}
    for layout, kind, src in (
        ("dicom_p10", "dicom", [str(z) for z in dicom.zips]),
        ("dicom_patient", "dicom", [str(z) for z in dicom.zips]),
        ("clinical_text", "text", [str(root / "notes")]),
    ):
        out = str(root / f"out-{layout}")
        r = cat.build(None, src, out, dataset="d", kind=kind, executor="local", layout=layout)  # type: ignore[arg-type]
        assert r.new_packs >= 1 and r.records >= 1
        assert cat.verify(out, decode=True).ok
        built[layout] = out
    return built


def _copy(src: str, dst: Path) -> str:
    shutil.copytree(src, dst)
    return str(dst)


def _first_pack(out: str) -> tuple[dict[str, Any], str]:
    pack = sorted(cat.open(out).packs().to_pylist(), key=lambda p: p["pack_id"])[0]
    return pack, os.path.join(out, pack["path"])


def _regions(path: str) -> dict[str, tuple[int, int]]:
    reader = PackReader(path)
    h = dict(reader.header)
    reader.close()
    with open(path, "rb") as fh:
        head = fh.read(int(h["header_bytes"]))
    used = len(head.rstrip(b"\0"))
    spans = {
        "header": (0, used),
        "header padding": (used, int(h["header_bytes"])),
        "slide table": (h["slide_table_offset"], h["slide_table_offset"] + h["slide_table_length"]),
        "index table": (h["index_table_offset"], h["index_table_offset"] + h["index_table_length"]),
        "data": (h["data_offset"], h["data_offset"] + h["data_length"]),
    }
    return {k: (int(a), int(b)) for k, (a, b) in spans.items() if b > a}


def _flip(path: str, pos: int, mask: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(pos)
        b = fh.read(1)
        fh.seek(pos)
        fh.write(bytes([b[0] ^ mask]))


@pytest.mark.parametrize("layout", ["dicom_p10", "clinical_text", "dicom_patient"])
def test_verify_catches_a_flip_in_every_region(
    layout: str, outs: dict[str, str], tmp_path: Path
) -> None:
    out = _copy(outs[layout], tmp_path / "out")
    pack, path = _first_pack(out)
    rnd = random.Random(f"flip:{layout}")
    caught: dict[str, int] = {}
    specific: dict[str, int] = {}
    for region, (a, b) in _regions(path).items():
        for _ in range(FLIPS_PER_REGION):
            pos, mask = rnd.randrange(a, b), rnd.choice([0xFF, 0x01, 0x80, rnd.randrange(1, 256)])
            _flip(path, pos, mask)
            try:
                report = cat.verify(out)  # never raises: every problem is a line of the report
            finally:
                _flip(path, pos, mask)
            assert not report.ok, f"{region} @{pos} ^{mask:#x} not caught"
            assert all(pack["pack_id"] in p for p in report.problems), report.problems
            # the file checksum catches it; it is reported itself only where no finer check
            # names the section or row (padding)
            by_checksum = len(report.problems) == 1 and "whole-file crc32c" in report.problems[0]
            caught[region] = caught.get(region, 0) + 1
            specific[region] = specific.get(region, 0) + (not by_checksum)
    assert caught == {r: FLIPS_PER_REGION for r in _regions(path)}
    assert specific["data"] == FLIPS_PER_REGION  # a data flip is always named by its row
    assert specific["header padding"] == 0  # no reader reads it: only the checksum sees it
    assert cat.verify(out).ok  # restored


def _span_of(path: str, section: str, needle: bytes) -> int:
    reader = PackReader(path)
    h = dict(reader.header)
    reader.close()
    start = int(h[f"{section}_table_offset"])
    with open(path, "rb") as fh:
        fh.seek(start)
        blob = fh.read(int(h[f"{section}_table_length"]))
    at = blob.find(needle)
    assert at >= 0, f"{needle!r} not in the {section} table"
    return start + at


def _forget_checksums(out: str) -> None:
    """What a catalog made before packs.file_crc32c looks like: the column is null."""
    DeltaRsStore(out).update(
        "packs", predicate="pack_id IS NOT NULL", updates={"file_crc32c": "CAST(NULL AS BIGINT)"}
    )


def test_index_and_slide_table_flips_are_named_without_the_file_checksum(
    outs: dict[str, str], tmp_path: Path
) -> None:
    """The two found in issue 11: an index-table flip crashed verify (UnicodeDecodeError, no pack
    named) and a slide-table flip passed it. Both must be named even in an old catalog."""
    out = _copy(outs["dicom_p10"], tmp_path / "out")
    _forget_checksums(out)
    report = cat.verify(out)
    assert report.ok and report.checksums_missing == 1 and "without a recorded" in str(report)
    pack, path = _first_pack(out)
    where = f"{pack['path']} (pack {pack['pack_id']})"
    index = PackReader(path).index_table
    source = index.column("source_path")[0].as_py().encode()
    pos = _span_of(path, "index", source) + 1
    _flip(path, pos, 0xFF)  # invalid UTF-8 inside a string column
    report = cat.verify(out)
    assert [p for p in report.problems if p.startswith(f"{where}: index table does not parse")]
    assert "UTF8" in str(report)
    with pytest.raises(CorruptPackError, match="index table") as exc:
        VerifiedPack(path)
    assert exc.value.section == "index table"
    _flip(path, pos, 0xFF)
    series = PackReader(path).slide_table.column("slide_id")[0].as_py().encode()
    pos = _span_of(path, "slide", series) + len(series) - 1
    _flip(path, pos, 0x01)  # one digit of a series UID: still a valid table
    report = cat.verify(out)
    assert any("slide table row 0 is not what the index gives" in p for p in report.problems)
    assert all(where in p for p in report.problems)
    _flip(path, pos, 0x01)
    assert cat.verify(out).ok


def test_readers_refuse_a_corrupted_record_naming_pack_and_row(
    outs: dict[str, str], tmp_path: Path
) -> None:
    out = _copy(outs["dicom_p10"], tmp_path / "out")
    pack, path = _first_pack(out)
    with VerifiedPack(path, label=f"pack {pack['pack_id']}") as good:
        originals = good.read_many(range(good.record_count))
    reader = PackReader(path)
    data_offset = int(reader.header["data_offset"])
    row = 2
    offset = int(reader.index_table.column("offset")[row].as_py())
    reader.close()
    _flip(path, data_offset + offset + 9, 0x10)
    with VerifiedPack(path, label=f"pack {pack['pack_id']}") as pk:
        assert pk.read(1) == originals[1]  # the other records still read
        with pytest.raises(CorruptPackError) as exc:
            pk.read_many([0, 1, 2, 3])
        assert exc.value.row == row and exc.value.section == "data"
        assert f"pack {pack['pack_id']} row {row}: stored bytes have crc32" in str(exc.value)
        with pytest.raises(CorruptPackError, match=f"row {row}"):
            pk.read(row)
    report = cat.verify(out)
    assert any(f"row {row}: stored bytes crc32" in p for p in report.problems)
    assert file_crc32c(path) != pack["file_crc32c"]
    # a catalog row pointing at a missing pack
    os.remove(path)
    with pytest.raises(MissingPackError, match="pack file is missing"):
        VerifiedPack(path)
    report = cat.verify(out)
    assert any(pack["path"] in p and "file is missing" in p for p in report.problems)


def test_errors_pickle_with_their_fields() -> None:
    import pickle

    e = pickle.loads(
        pickle.dumps(CorruptPackError("x row 3", pack="/p.iac", row=3, section="data"))
    )
    assert (str(e), e.pack, e.row, e.section) == ("x row 3", "/p.iac", 3, "data")
    m = pickle.loads(pickle.dumps(MissingPackError("gone", pack="/p.iac")))
    assert isinstance(m, FileNotFoundError) and m.pack == "/p.iac"


@pytest.mark.spark
def test_iac_source_fails_on_a_corrupted_record(
    spark: Any, outs: dict[str, str], tmp_path: Path
) -> None:
    """(The happy path of the source with content is tests/test_packing.py's.)"""
    out = _copy(outs["dicom_p10"], tmp_path / "out")
    _, path = _first_pack(out)
    reader = PackReader(path)
    offset = int(reader.header["data_offset"]) + int(reader.index_table.column("offset")[1].as_py())
    reader.close()
    _flip(path, offset + 5, 0x04)
    with pytest.raises(Exception, match=r"row 1: stored bytes have crc32") as exc:
        spark.read.format("iac").option("content", "true").load(path).toArrow()
    assert path in str(exc.value) and "CorruptPackError" in str(exc.value)
