"""The synthetic Chinese clinical-notes corpus (pure Python, no JVM)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import pytest

from iac_spark.inputs.archives import decode_member_name
from iac_spark.testing.textcorpus import (
    ENCODINGS,
    JUNK_KINDS,
    TextCorpusSpec,
    TextCorpusSummary,
    encode_note,
    generate_text_corpus,
)
from iac_spark.text import decode_document, path_fields
from iac_spark.text import errors as text_errors

SPEC = TextCorpusSpec(
    patients=12,
    docs_per_patient=7,
    institutions=("XJ", "BJ"),
    zip_fraction=0.75,
    patients_per_zip=1,
    gbk_names_fraction=0.34,
    nested_fraction=0.34,
    prefix_fraction=0.34,
    short_fraction=0.2,
    junk=("all",),
    unpaired=2,
    seed=11,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> TextCorpusSummary:
    root = tmp_path_factory.mktemp("notes")
    return generate_text_corpus(root / "src", SPEC, compressed_root=root / "compressed")


def _zip_members(blob: bytes) -> dict[str, bytes]:
    """{decoded member name: bytes} of a zip, nested zips opened and chained with '!'."""
    out: dict[str, bytes] = {}
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        for info in zf.infolist():
            name, data = decode_member_name(info), zf.read(info)
            if name.endswith(".zip"):
                out.update({f"{name}!{k}": v for k, v in _zip_members(data).items()})
            else:
                out[name] = data
    return out


def _infos(blob: bytes) -> list[zipfile.ZipInfo]:
    """The ZipInfos of a zip and of the zips nested in it."""
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        out = zf.infolist()
        for info in list(out):
            if info.filename.endswith(".zip"):
                out += _infos(zf.read(info))
    return out


def _all_members(summary: TextCorpusSummary) -> dict[tuple[str, str | None], bytes]:
    """{(absolute path, member or None): bytes} of everything written under the root."""
    got: dict[tuple[str, str | None], bytes] = {}
    for path in summary.files:
        if path.suffix == ".zip":
            got.update({(str(path), m): d for m, d in _zip_members(path.read_bytes()).items()})
        else:
            got[(str(path), None)] = path.read_bytes()
    return got


def test_summary_matches_the_files(corpus: TextCorpusSummary) -> None:
    members = _all_members(corpus)
    expected = {(d.path, d.member) for d in corpus.docs} | {(b.path, b.member) for b in corpus.bad}
    assert set(members) == expected  # every member is a note or a listed bad one, none missing
    assert len(expected) == len(corpus.docs) + len(corpus.bad)  # no two at one location
    for d in corpus.docs:
        data = members[(d.path, d.member)]
        assert (len(data), zlib.crc32(data)) == (d.size, d.crc32)
        decoded = decode_document(data, d.member or d.path)
        assert (decoded.text, decoded.encoding, decoded.n_chars) == (d.text, d.encoding, d.n_chars)
        rel = d.member or str(Path(d.path).relative_to(corpus.root))
        f = path_fields(rel)
        assert (
            f.institution,
            f.patient_id,
            f.encounter,
            f.doc_type,
            f.doc_timestamp,
            f.doc_id,
        ) == (
            d.institution,
            d.patient_id,
            d.encounter,
            d.doc_type,
            d.doc_timestamp,
            d.doc_id,
        )
    assert corpus.members_per_file() == dict(sorted(Counter(p for p, _ in expected).items()))
    assert all(p.is_file() and p.is_relative_to(corpus.root) for p in corpus.files)


def test_patients_docs_and_doc_ids(corpus: TextCorpusSummary) -> None:
    pids = [f"Patient_{i:08d}" for i in range(1, SPEC.patients + 1)]
    assert corpus.docs_per_patient == dict.fromkeys(pids, SPEC.docs_per_patient)
    assert Counter(d.patient_id for d in corpus.docs) == Counter(corpus.docs_per_patient)
    assert len({d.doc_id for d in corpus.docs}) == len(corpus.docs)
    inst = {d.patient_id: d.institution for d in corpus.docs}
    assert [inst[p] for p in pids[:4]] == ["XJ", "BJ", "XJ", "BJ"]
    for pid in pids:
        docs = sorted(
            (d for d in corpus.docs if d.patient_id == pid), key=lambda d: d.doc_timestamp
        )
        assert docs[0].doc_type == "入院记录" and docs[-1].doc_type == "出院小结"
        assert all(len(d.doc_timestamp) == 14 and d.doc_timestamp.isdigit() for d in docs)


def test_encodings_in_exact_proportions(corpus: TextCorpusSummary) -> None:
    n = len(corpus.docs)
    counts = Counter(d.encoding for d in corpus.docs)
    for enc, frac in SPEC.encodings:
        assert abs(counts[enc] - n * frac) < 1, (enc, counts)
    assert set(counts) <= set(ENCODINGS)


def test_texts_look_like_notes(corpus: TextCorpusSummary) -> None:
    texts = [d.text or "" for d in corpus.docs]
    lengths = [len(t) for t in texts]
    assert min(lengths) >= 20 and max(lengths) <= SPEC.max_chars
    assert sum(n <= 40 for n in lengths) >= 0.1 * len(texts)  # short notes
    assert max(lengths) > 1000  # and long ones
    joined = "".join(texts)
    for phrase in ("主诉：", "现病史：", "体格检查：", "诊断", "mmHg", "℃", "×10^9/L"):
        assert phrase in joined, phrase
    assert any("\r\n" in t for t in texts) and any("\n" in t and "\r" not in t for t in texts)


def test_zips_gbk_names_nested_prefixed(corpus: TextCorpusSummary) -> None:
    zips = [p for p in corpus.files if p.suffix == ".zip" and p.name != "junk.zip"]
    assert len(zips) == round(SPEC.patients * SPEC.zip_fraction)
    gbk = 0
    for path in zips:
        infos = _infos(path.read_bytes())
        assert {i.date_time for i in infos} == {(2024, 1, 1, 0, 0, 0)}
        raw_gbk = [i for i in infos if not i.filename.isascii() and not i.flag_bits & 0x800]
        gbk += bool(raw_gbk)
        for info in raw_gbk:  # zipfile alone reads mojibake; decode_member_name the GBK
            assert decode_member_name(info) == info.filename.encode("cp437").decode("gbk")
    assert gbk == round(len(zips) * SPEC.gbk_names_fraction)
    members = [d.member for d in corpus.docs if d.member]
    nested = {m.split("!")[0] for m in members if "!" in m}
    assert len(nested) == round(len(zips) * SPEC.nested_fraction)
    assert all(n.startswith("inner/") and n.endswith(".zip") for n in nested)
    prefixed = {
        d.path for d in corpus.docs if d.member and d.member.split("!")[-1].startswith("export/")
    }
    assert len(prefixed) == round(len(zips) * SPEC.prefix_fraction)
    bare = [d for d in corpus.docs if d.member is None]
    assert len({d.patient_id for d in bare}) == SPEC.patients - len(zips)


def test_bad_members_give_their_errors(corpus: TextCorpusSummary) -> None:
    members = _all_members(corpus)
    kinds = Counter(b.kind for b in corpus.bad)
    assert set(kinds) == set(JUNK_KINDS)
    assert kinds["empty"] == 2  # in junk.zip and a bare file
    for b in corpus.bad:
        data = members[(b.path, b.member)]
        name = b.member or str(Path(b.path).relative_to(corpus.root))
        if b.error is None:
            assert b.kind == "license" and not name.endswith(".txt")
            continue
        with pytest.raises(getattr(text_errors, b.error)) as e:
            path_fields(name, where=name)
            decode_document(data, name)
        assert str(e.value).startswith(name)
    assert {b.error for b in corpus.errors} == {
        "BinaryContentError",
        "EmptyDocumentError",
        "UndecodableTextError",
        "PathPatternMismatchError",
    }


def test_compressed_companion(corpus: TextCorpusSummary) -> None:
    assert corpus.compressed_root is not None
    src = {d.doc_id: d for d in corpus.docs}
    comp = {d.doc_id: d for d in corpus.compressed_docs}
    assert len(corpus.unpaired_sources) == len(corpus.unpaired_compressed) == SPEC.unpaired
    assert set(src) - set(comp) == set(corpus.unpaired_sources)
    assert set(comp) - set(src) == set(corpus.unpaired_compressed)
    for doc_id, c in comp.items():
        assert c.member is None and Path(c.path).is_file() and c.encoding == "utf-8"
        rel = Path(c.path).relative_to(corpus.compressed_root).as_posix()
        assert path_fields(rel).doc_id == doc_id
        assert (c.text or "").startswith("【摘要】")
        assert decode_document(Path(c.path).read_bytes(), rel).text == c.text
        if doc_id in src:
            assert len(c.text or "") < len(src[doc_id].text or "") + 10
    long_pairs = [(src[k], c) for k, c in comp.items() if k in src and src[k].n_chars > 500]
    assert long_pairs and all(c.n_chars < s.n_chars / 2 for s, c in long_pairs)
    assert sorted(corpus.compressed_files) == sorted(Path(c.path) for c in comp.values())


def test_same_seed_same_bytes(tmp_path: Path, corpus: TextCorpusSummary) -> None:
    again = generate_text_corpus(tmp_path / "again", SPEC, compressed_root=tmp_path / "c")
    rel = [p.relative_to(corpus.root) for p in corpus.files]
    assert [p.relative_to(again.root) for p in again.files] == rel
    assert all((corpus.root / r).read_bytes() == (again.root / r).read_bytes() for r in rel)
    assert [(d.doc_id, d.crc32, d.member) for d in again.docs] == [
        (d.doc_id, d.crc32, d.member) for d in corpus.docs
    ]
    assert again.unpaired_sources == corpus.unpaired_sources


def test_other_seed_other_corpus(tmp_path: Path) -> None:
    spec = TextCorpusSpec(patients=3, docs_per_patient=2)
    a = generate_text_corpus(tmp_path / "a", spec)
    b = generate_text_corpus(tmp_path / "b", TextCorpusSpec(patients=3, docs_per_patient=2, seed=1))
    assert [d.crc32 for d in a.docs] != [d.crc32 for d in b.docs]


def test_bare_only_and_batched_zips(tmp_path: Path) -> None:
    bare = generate_text_corpus(
        tmp_path / "bare", TextCorpusSpec(patients=2, zip_fraction=0.0, junk=("license", "empty"))
    )
    assert all(p.suffix != ".zip" for p in bare.files) and all(d.member is None for d in bare.docs)
    assert {(b.kind, b.member) for b in bare.bad} == {("license", None), ("empty", None)}
    batched = generate_text_corpus(
        tmp_path / "batch", TextCorpusSpec(patients=7, zip_fraction=1.0, patients_per_zip=3)
    )
    assert [p.name for p in batched.files] == [
        "batch_00001.zip",
        "batch_00002.zip",
        "batch_00003.zip",
    ]
    assert len(_all_members(batched)) == len(batched.docs) == 7 * 6


def test_keep_text_false(tmp_path: Path) -> None:
    s = generate_text_corpus(tmp_path, TextCorpusSpec(patients=1, keep_text=False))
    assert all(d.text is None and d.n_chars >= 20 for d in s.docs)


def test_encode_note() -> None:
    assert encode_note("好", "utf-8-sig") == b"\xef\xbb\xbf\xe5\xa5\xbd"
    assert encode_note("好", "utf-16-le") == b"\xff\xfe}Y"
    assert encode_note("好", "gb18030") == "好".encode("gb18030")


@pytest.mark.parametrize(
    "bad",
    [
        {"patients": -1},
        {"docs_per_patient": 1.5},
        {"zip_fraction": 1.5},
        {"patients_per_zip": 0},
        {"institutions": ()},
        {"institutions": ("a/b",)},
        {"encodings": (("big5", 1.0),)},
        {"encodings": (("utf-8", 0.0),)},
        {"junk": ("nope",)},
        {"max_chars": 10},
    ],
)
def test_spec_validation(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"TextCorpusSpec\."):
        TextCorpusSpec(**bad)  # type: ignore[arg-type]


def test_command_line(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "iac_spark.testing.textcorpus"]
    helped = subprocess.run([*run, "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--patients" in helped.stdout
    out = subprocess.run(
        [*run, str(tmp_path / "o"), "--patients", "3", "--docs-per-patient", "4", "--junk", "all",
         "--compressed", str(tmp_path / "c"), "--encodings", "gb18030=0.5,utf-8=0.5",
         "--manifest", str(tmp_path / "m.jsonl"), "--seed", "5"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.startswith("12 notes (") and "compressed notes" in out.stdout
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text("utf-8").splitlines()]
    assert len(rows) == 12 and {r["encoding"] for r in rows} == {"gb18030", "utf-8"}
    assert all(r["text"] for r in rows)
    bad = subprocess.run(
        [*run, str(tmp_path / "x"), "--junk", "nope"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "junk" in bad.stderr
