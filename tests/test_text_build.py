"""Clinical text packs on the build core: real notes, real packs, the adapters' own readers.

Builds run on the local executor (no JVM) except one that checks the Spark executor gives the
same records. Every note must end as a packed document (read back exactly through
``ClinicalTextReader`` / ``ClinicalTextPairReader``) or an error row naming file and member.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from iatro.iac.adapters.text import ClinicalTextReader
from iatro.iac.adapters.text_pair import ClinicalTextPairReader

import iac_spark.catalog as cat
from iac_spark.errors import location
from iac_spark.testing.textcorpus import TextCorpusSpec, generate_text_corpus


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("notes")
    return generate_text_corpus(
        root / "src",
        TextCorpusSpec(patients=8, docs_per_patient=5, junk=("all",), seed=5, unpaired=2),
        compressed_root=root / "compressed",
    )


def _records(out: str, reader_cls: type) -> dict[str, object]:
    """Live records of ``out``, opened with the adapters' reader: patient → PatientText(Pairs)."""
    rows = cat.sql(
        out,
        "SELECT r.patient_id, r.row, p.path FROM records r JOIN packs p ON r.pack_id = p.pack_id "
        "WHERE NOT r.retired",
    ).to_pylist()
    got = {}
    for r in rows:
        reader = reader_cls(str(Path(out) / r["path"]))
        assert r["patient_id"] not in got, "exactly one live record per patient"
        got[r["patient_id"]] = reader.read_patient_at(r["row"])
        assert reader.read_patient(r["patient_id"]).patient_id == r["patient_id"]
    return got


def _accounting(out: str) -> None:
    for s in cat.open(out).sources().to_pylist():
        assert s["members"] == s["packed"] + s["duplicates"] + s["errors"] + s["skipped"], s


def test_text_packs_round_trip_through_the_adapters_reader(notes, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    r = cat.build(None, [str(notes.root)], out, kind="text", executor="local", dataset="notes")
    assert r.records == len(notes.docs_per_patient)
    assert cat.open(out).packs().column("payload_type").to_pylist() == ["clinical_text"]
    got = _records(out, ClinicalTextReader)
    for d in notes.docs:
        patient = got[d.patient_id]
        [doc] = [x for x in patient.docs if x.doc_id == d.doc_id]
        assert doc.text == d.text  # exactly the decoded text, Chinese included
        assert (doc.doc_type, doc.encounter, doc.doc_timestamp) == (
            d.doc_type,
            d.encounter,
            d.doc_timestamp,
        )
        assert doc.source == location(d.path, d.member)
        assert patient.institution == d.institution
    for patient in got.values():  # documents in (doc_timestamp, doc_id) order
        keys = [(x.doc_timestamp, x.doc_id) for x in patient.docs]
        assert keys == sorted(keys)
    assert sum(len(p.docs) for p in got.values()) == len(notes.docs)
    # every bad member is an error row naming its file and member
    errors = {
        (e["source_path"], e["source_member"]): e["error"]
        for e in cat.open(out).errors().to_pylist()
    }
    for b in notes.errors:
        text = errors[(b.path, b.member)]
        assert text.startswith(b.error + ":") and location(b.path, b.member) in text
    assert len(errors) == len(notes.errors)
    _accounting(out)
    # the documents table answers SQL, one row per packed note
    docs = cat.sql(
        out, "SELECT doc_id, encoding, n_chars, raw_crc32, source_member FROM documents"
    ).to_pylist()
    by_id = {x["doc_id"]: x for x in docs}
    assert len(docs) == len(notes.docs) == len(by_id)
    for d in notes.docs:
        x = by_id[d.doc_id]
        assert (x["encoding"], x["n_chars"], x["raw_crc32"], x["source_member"]) == (
            d.encoding, d.n_chars, d.crc32, d.member)  # fmt: skip
    assert cat.verify(out, decode=True).ok


def test_pairs_report_unpaired_notes_on_both_sides(notes, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    r = cat.build(None, [str(notes.root)], out, kind="text", executor="local",
                  layout="clinical_text_pair", compressed=[str(notes.compressed_root)])  # fmt: skip
    assert r.run_id is not None
    assert cat.open(out).packs().column("payload_type").to_pylist() == ["clinical_text_pair"]
    got = _records(out, ClinicalTextPairReader)
    compressed = {d.doc_id: d for d in notes.compressed_docs}
    packed = {doc.doc_id: doc for p in got.values() for doc in p.docs}
    unpaired = set(notes.unpaired_sources) | set(notes.unpaired_compressed)
    assert unpaired and not unpaired & set(packed)
    for d in notes.docs:
        if d.doc_id in notes.unpaired_sources:
            continue
        doc = packed[d.doc_id]
        assert doc.source_text == d.text and doc.compressed_text == compressed[d.doc_id].text
    errs = [e for e in cat.open(out).errors().to_pylist() if e["stage"] == "unpaired"]
    assert sorted(e["error"].split("(doc_id ")[1].split(")")[0] for e in errs) == sorted(unpaired)
    assert all(e["error"].startswith("UnpairedDocument: ") for e in errs)
    _accounting(out)
    assert cat.verify(out, decode=True).ok


def test_a_patient_whose_notes_arrive_in_two_builds(tmp_path: Path) -> None:
    spec = TextCorpusSpec(patients=3, docs_per_patient=4, zip_fraction=0.0, seed=9)
    first = generate_text_corpus(tmp_path / "a", spec)
    out = str(tmp_path / "out")
    cat.build(None, [str(first.root)], out, kind="text", executor="local")
    before = _records(out, ClinicalTextReader)
    # a second delivery: more notes for patient 1 (a later encounter), in another folder
    later = generate_text_corpus(
        tmp_path / "b", TextCorpusSpec(patients=1, docs_per_patient=2, zip_fraction=0.0, seed=77)
    )
    pid = later.docs[0].patient_id
    assert pid in before
    r2 = cat.build(None, [str(first.root), str(later.root)], out, kind="text", executor="local")
    assert r2.records == 1 and r2.new_sources == len(later.docs)
    after = _records(out, ClinicalTextReader)
    ids = {d.doc_id for d in after[pid].docs}
    assert ids == {d.doc_id for d in before[pid].docs} | {d.doc_id for d in later.docs}
    texts = {d.doc_id: d.text for d in after[pid].docs}
    for d in [*first.docs, *later.docs]:
        if d.patient_id == pid:
            assert texts[d.doc_id] == d.text
    for other in set(before) - {pid}:  # other patients keep their record
        assert [d.doc_id for d in after[other].docs] == [d.doc_id for d in before[other].docs]
    c = cat.open(out)
    live_docs = [
        d for d in c.table("documents").to_pylist() if not d["retired"] and d["patient_id"] == pid
    ]
    assert sorted(d["doc_id"] for d in live_docs) == sorted(ids)
    assert len({(d["pack_id"], d["row"]) for d in live_docs}) == 1  # all point at the new record
    assert cat.verify(out, decode=True).ok
    # as of the first build, the patient still had its first record only
    then = cat.sql(out, f"SELECT count(*) AS n FROM documents WHERE NOT retired AND patient_id = '{pid}'",
                   as_of=1).to_pylist()[0]["n"]  # fmt: skip
    assert then == len(before[pid].docs)


@pytest.mark.spark
def test_spark_executor_gives_the_same_text_records(spark, notes, tmp_path: Path) -> None:
    outs = {e: str(tmp_path / e) for e in ("local", "spark")}
    for e, out in outs.items():
        cat.build(spark if e == "spark" else None, [str(notes.root)], out, kind="text", executor=e)

    def docs(out: str) -> list[tuple]:
        return sorted(
            (d["patient_id"], d["doc_id"], d["raw_crc32"], d["n_chars"])
            for d in cat.open(out).table("documents").to_pylist()
        )

    assert docs(outs["local"]) == docs(outs["spark"])
    assert {k: v.docs for k, v in _records(outs["local"], ClinicalTextReader).items()} == {
        k: v.docs for k, v in _records(outs["spark"], ClinicalTextReader).items()
    }


@pytest.mark.spark
def test_build_text_packs_from_ziptext_dataframes(spark, notes, tmp_path: Path) -> None:
    import iac_spark
    from iac_spark.errors import OptionError

    def load(root: Path):
        return spark.read.format("ziptext").option("includeSkipped", "true").load(str(root))

    out = str(tmp_path / "out")
    single = iac_spark.build_text_packs(load(notes.root), out, dataset="notes")
    patients = {}
    for p in single.packs:
        reader = ClinicalTextReader(p.path)
        for row in range(reader.record_count):
            got = reader.read_patient_at(row)
            assert got.patient_id not in patients  # one record per patient
            patients[got.patient_id] = {d.doc_id: d.text for d in got.docs}
    assert patients == {
        pid: {d.doc_id: d.text for d in notes.docs if d.patient_id == pid}
        for pid in notes.docs_per_patient
    }
    for counts in single.sources.values():
        assert counts.members == counts.packed + counts.duplicates + counts.errors + counts.skipped
    pairs = iac_spark.build_text_packs(
        load(notes.root), out, dataset="pairs", layout="clinical_text_pair",
        compressed=load(notes.compressed_root),
    )  # fmt: skip
    packed = {
        d.doc_id
        for p in pairs.packs
        for row in range(ClinicalTextPairReader(p.path).record_count)
        for d in ClinicalTextPairReader(p.path).read_patient_at(row).docs
    }
    unpaired = set(notes.unpaired_sources) | set(notes.unpaired_compressed)
    assert packed == {d.doc_id for d in notes.docs} - unpaired
    stages = pairs.issues.column("stage").to_pylist()
    assert stages.count("unpaired") == len(unpaired)
    with pytest.raises(OptionError, match="needs the compressed notes"):
        iac_spark.build_text_packs(load(notes.root), out, layout="clinical_text_pair")
