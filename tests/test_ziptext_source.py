"""The ziptext Spark source: contract columns, every encoding, GBK names, bad notes as error rows."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from iac_spark.errors import OptionError, location
from iac_spark.sources.options import ZipTextOptions
from iac_spark.sources.ziptext import text_arrow_schema
from iac_spark.testing.textcorpus import TextCorpusSpec, generate_text_corpus

from .helpers import write_zip

pytestmark = pytest.mark.spark

CONTRACT = (
    "path", "member", "size", "crc32", "institution", "patient_id", "encounter", "doc_type",
    "doc_timestamp", "doc_id", "encoding", "n_chars", "text", "status", "error",
)  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return generate_text_corpus(
        tmp_path_factory.mktemp("ziptext"),
        TextCorpusSpec(
            patients=6, docs_per_patient=4, junk=("all",), seed=2, gbk_names_fraction=0.5
        ),
    )


def test_contract_columns(spark, corpus) -> None:
    df = spark.read.format("ziptext").load(str(corpus.root))
    assert tuple(df.columns) == CONTRACT == tuple(text_arrow_schema().names)
    types = dict(df.dtypes)
    assert types["size"] == types["crc32"] == types["n_chars"] == "bigint"
    assert types["text"] == types["doc_timestamp"] == "string"


def test_every_note_decoded_and_every_bad_member_an_error_row(spark, corpus) -> None:
    rows = spark.read.format("ziptext").load(str(corpus.root)).collect()
    by = {(r.path, r.member): r for r in rows}
    assert len(by) == len(rows)
    for d in corpus.docs:
        r = by[(d.path, d.member)]
        assert r.status == "ok" and r.error is None
        assert r.text == d.text and r.encoding == d.encoding and r.n_chars == d.n_chars
        assert (r.patient_id, r.encounter, r.doc_type, r.doc_timestamp, r.institution) == (
            d.patient_id, d.encounter, d.doc_type, d.doc_timestamp, d.institution)  # fmt: skip
        assert r.doc_id == d.doc_id and r.crc32 == d.crc32 and r.size == d.size
    encodings = {d.encoding for d in corpus.docs}
    assert {"gb18030", "utf-8", "utf-8-sig"} <= encodings and encodings & {"utf-16-le", "utf-16-be"}
    assert any(d.member and not d.member.isascii() for d in corpus.docs)  # GBK-decoded names
    for b in corpus.errors:
        r = by[(b.path, b.member)]
        assert r.status == "error" and r.error.startswith(b.error + ":")
        assert location(b.path, b.member) in r.error and r.text is None
    assert len(rows) == len(corpus.docs) + len(corpus.errors)  # skipped members have no row
    full = (
        spark.read.format("ziptext")
        .option("includeSkipped", "true")
        .load(str(corpus.root))
        .collect()
    )
    skipped = [r for r in full if r.status == "skipped"]
    assert len(skipped) == len(corpus.bad) - len(corpus.errors) and all(
        r.error is None for r in skipped
    )


def test_options(spark, tmp_path: Path) -> None:
    note = "主诉：咳嗽三天，伴发热。".encode("gb18030")
    z = write_zip(tmp_path / "n.zip", {
        "H1/P9/2024-02-02/入院记录_20240202080000.txt": note,
        "H1/P9/2024-02-02/病程记录.txt": note,  # no timestamp: the default pattern refuses it
        "H1/P9/2024-02-02/big_20240202090000.txt": b"x" * 5000,
    })  # fmt: skip
    rows = {
        r.member: r
        for r in spark.read.format("ziptext").option("maxDocBytes", "4k").load(str(z)).collect()
    }
    assert rows["H1/P9/2024-02-02/入院记录_20240202080000.txt"].encoding == "gb18030"
    assert "does not match pathPattern" in rows["H1/P9/2024-02-02/病程记录.txt"].error
    assert rows["H1/P9/2024-02-02/big_20240202090000.txt"].error.startswith("DocumentTooLargeError")
    forced = spark.read.format("ziptext").option("encoding", "gbk").load(str(z)).collect()
    assert {r.encoding for r in forced if r.status == "ok"} == {"gbk"}
    custom = spark.read.format("ziptext").option(
        "pathPattern", r"(?P<institution>[^/]+)/(?P<patient_id>[^/]+)/(?P<encounter>[^/]+)/"
        r"(?P<doc_type>[^/_]+)(?P<doc_timestamp>)\.txt"
    ).load(str(z)).collect()  # fmt: skip
    assert any(
        r.status == "error" and "only leaving doc_timestamp empty" in r.error for r in custom
    )
    with pytest.raises(OptionError, match="pathPattern"):
        ZipTextOptions.parse({"path": "/x", "pathPattern": "(?P<patient_id>x)"})
    with pytest.raises(OptionError, match="unknown ziptext option"):
        ZipTextOptions.parse({"path": "/x", "encodng": "gbk"})
    with zipfile.ZipFile(z) as zf:
        assert len(zf.namelist()) == 3
