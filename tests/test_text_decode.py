"""The text codec (pure Python, no JVM): encoding detection, bad documents, path fields."""

from __future__ import annotations

import codecs
import contextlib
import random
import re
import unicodedata
import zipfile
from pathlib import Path

import pytest

from iac_spark.errors import MemberError, OptionError, error_text
from iac_spark.inputs.archives import decode_member_name
from iac_spark.text import (
    DEFAULT_MAX_DOC_BYTES,
    DEFAULT_PATH_PATTERN,
    BinaryContentError,
    Decoded,
    DocumentTooLargeError,
    EmptyDocumentError,
    EncodingConflictError,
    PathFields,
    PathPatternMismatchError,
    UndecodableTextError,
    UnsupportedEncodingError,
    check_document_size,
    compile_path_pattern,
    decode_document,
    make_doc_id,
    path_fields,
    resolve_encoding,
)

from .helpers import RawNameZipInfo

WHERE = "/data/XJ.zip!XJ/Patient_00000001/2024-01-01/入院记录_20240101000000.txt"
NOTE = "主诉：反复咳嗽、咳痰伴气促三年，加重一周。\n体格检查：体温37.8℃，血压146/88mmHg。"
SHORT20 = "患者三天前受凉后出现咳嗽发热伴乏力予退热"  # 20 characters, 40 bytes in GB18030
RARE = "姓名：李䶮，王堃，𠮷田。"  # 䶮 CJK Ext-A, 堃 GBK only, 𠮷 Ext-B (4 bytes; a UTF-16 surrogate pair)


def _gb2312_hanzi() -> list[str]:
    out = []
    for lead in range(0xB0, 0xF8):
        for trail in range(0xA1, 0xFF):
            with contextlib.suppress(UnicodeDecodeError):
                out.append(bytes([lead, trail]).decode("gb2312"))
    return out


GB2312 = _gb2312_hanzi()
LEVEL1 = GB2312[:3755]  # the most frequent characters
CLINICAL = sorted(
    set(NOTE + SHORT20 + "入院记录病程出院小结检验报告现病史既往史诊断治疗医嘱")
    - set("：，、。\n℃/")
)


def _short_notes(seed: int, n: int = 1000) -> list[str]:
    """n notes of 10..40 characters: hanzi (clinical + frequent), some digits and ASCII."""
    r = random.Random(seed)
    pool = CLINICAL * 20 + LEVEL1 + list("0123456789") * 10 + list("mgLCT ")
    return ["".join(r.choices(pool, k=r.randint(10, 40))) for _ in range(n)]


# ---- encodings ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (NOTE.encode("gb18030"), "gb18030"),
        (NOTE.encode("utf-8"), "utf-8"),
        (codecs.BOM_UTF8 + NOTE.encode("utf-8"), "utf-8-sig"),
        (codecs.BOM_UTF16_LE + NOTE.encode("utf-16-le"), "utf-16-le"),
        (codecs.BOM_UTF16_BE + NOTE.encode("utf-16-be"), "utf-16-be"),
        (codecs.BOM_UTF32_LE + NOTE.encode("utf-32-le"), "utf-32-le"),
        (codecs.BOM_UTF32_BE + NOTE.encode("utf-32-be"), "utf-32-be"),
    ],
)
def test_every_encoding_round_trips(data: bytes, name: str) -> None:
    d = decode_document(data, WHERE)
    assert d == Decoded(NOTE, name, len(NOTE))


@pytest.mark.parametrize("codec", ["gb18030", "utf-8", "utf-16-le", "utf-16-be"])
def test_rare_characters_crlf_and_surrogates(codec: str) -> None:
    text = (RARE + "\r\n" + NOTE).replace("\n", "\r\n")
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}.get(codec, b"")
    d = decode_document(bom + text.encode(codec), WHERE)
    assert (d.text, d.encoding, d.n_chars) == (text, codec, len(text))
    assert "\r\n" in d.text and "𠮷" in d.text


def test_twenty_character_gb18030_note_is_not_big5_or_shift_jis() -> None:
    assert len(SHORT20) == 20
    d = decode_document(SHORT20.encode("gb18030"), WHERE)
    assert (d.text, d.encoding) == (SHORT20, "gb18030")


def test_ascii_is_utf8() -> None:
    assert decode_document(b"BP 120/80 mmHg\n", WHERE).encoding == "utf-8"


def test_many_short_gb18030_notes_are_all_gb18030() -> None:
    notes = _short_notes(seed=1)
    got = [decode_document(n.encode("gb18030"), WHERE) for n in notes]
    wrong = [
        (n, g) for n, g in zip(notes, got, strict=True) if (g.text, g.encoding) != (n, "gb18030")
    ]
    assert not wrong, wrong[:3]


def test_many_short_utf8_notes_are_all_utf8() -> None:
    notes = _short_notes(seed=2)
    got = [decode_document(n.encode("utf-8"), WHERE) for n in notes]
    wrong = [
        (n, g) for n, g in zip(notes, got, strict=True) if (g.text, g.encoding) != (n, "utf-8")
    ]
    assert not wrong, wrong[:3]


@pytest.mark.parametrize("pool_name", ["LEVEL1", "GB2312", "CLINICAL"])
def test_20000_pure_hanzi_notes_of_10_chars_decode_right(pool_name: str) -> None:
    """The evidence for UTF-8 first, on the worst case: notes of hanzi only.

    Digits, ASCII and full-width punctuation (。，：are never valid UTF-8 leads)
    only make accidental UTF-8 rarer. A GB2312 hanzi is valid UTF-8 alone with
    probability ~0.14 (930 of 6,763), ~0.29 in the clinical vocabulary; 10 in a row
    measured 0..3e-6, and the tie-break of iac_spark.text.decode catches most of
    those.
    """
    pool = {"LEVEL1": LEVEL1, "GB2312": GB2312, "CLINICAL": CLINICAL}[pool_name]
    r = random.Random(pool_name)
    for _ in range(20_000):
        note = "".join(r.choices(pool, k=10))
        d = decode_document(note.encode("gb18030"), WHERE)
        assert (d.text, d.encoding) == (note, "gb18030"), note


def test_single_hanzi_valid_as_utf8_counts() -> None:
    """930 GB2312 hanzi are valid UTF-8 alone; the tie-break reads 511 of them right."""
    as_utf8 = [c for c in GB2312 if _valid_utf8(c.encode("gb18030"))]
    misread = [
        c for c in as_utf8 if decode_document(c.encode("gb18030"), WHERE).encoding != "gb18030"
    ]
    assert (len(GB2312), len(as_utf8), len(misread)) == (6763, 930, 419)
    plausible = [(0xA0, 0x17F), (0x370, 0x3FF), (0x400, 0x45F), (0x490, 0x4FF), (0x600, 0x6FF)]
    for c in misread:  # each reads as one Latin, Greek, Cyrillic or Arabic letter
        (ch,) = decode_document(c.encode("gb18030"), WHERE).text
        assert any(lo <= ord(ch) <= hi for lo, hi in plausible), (c, ch)


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize("note", ["血压146/88mmHg", "医师", "CT示双", "指示", "片状"])
def test_gb18030_that_is_valid_utf8_by_accident(note: str) -> None:
    data = note.encode("gb18030")
    data.decode("utf-8")  # valid UTF-8 (血压 reads as archaic Cyrillic Ѫѹ) ...
    d = decode_document(data, WHERE)
    assert (d.text, d.encoding) == (note, "gb18030")  # ... but read as GB18030


@pytest.mark.parametrize(
    "text",
    [
        "Привет, пациент",
        "дом",  # its GB18030 reading is GB2312 only, but nothing in it is implausible
        "Қазақ тілі",
        "ئۇيغۇرچە خەت",
        "Lǐ Míng, naïve café",
        "°C ±0.5 ×10^9/L µmol",
        "αβγ μg",
        "ˊˋˇ",
    ],
)
def test_legitimate_utf8_keeps_utf8(text: str) -> None:
    d = decode_document(text.encode("utf-8"), WHERE)
    assert (d.text, d.encoding) == (text, "utf-8")


def test_known_limit_gb18030_reading_as_latin1() -> None:
    """A GB18030 note whose byte pairs are also UTF-8 for Latin-1 (Greek, Cyrillic...) stays UTF-8.

    Such notes are a handful of hanzi at most (酶 = C3 B8 = 'ø'); ``encoding=gb18030``
    reads them right.
    """
    data = "酶35U/L".encode("gb18030")
    assert decode_document(data, WHERE).text == "ø35U/L"
    assert decode_document(data, WHERE, encoding="gb18030").text == "酶35U/L"


def test_big5_is_refused_not_mangled() -> None:
    trad = "患者咳嗽三天伴發熱，體溫三十八度，予退熱。診斷：肺炎"
    with pytest.raises(UnsupportedEncodingError, match=r"private-use .* Big5"):
        decode_document(trad.encode("big5"), WHERE)
    assert decode_document(trad.encode("big5"), WHERE, encoding="big5").text == trad


def test_gbk_traditional_characters_are_fine() -> None:
    trad = "主訴：反覆咳嗽、咳痰伴氣促三年，加重一週。"
    assert decode_document(trad.encode("gbk"), WHERE).encoding == "gb18030"


# ---- BOM, empty, whitespace ---------------------------------------------------------


@pytest.mark.parametrize(
    "bom", [codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE]
)
def test_bom_only_is_empty(bom: bytes) -> None:
    with pytest.raises(EmptyDocumentError, match=r"only a byte-order mark"):
        decode_document(bom, WHERE)


def test_bom_is_stripped_once() -> None:
    data = codecs.BOM_UTF8 + "\ufeff第二个".encode()
    assert decode_document(data, WHERE).text == "\ufeff第二个"  # a second BOM is text


@pytest.mark.parametrize(
    "data",
    [b"", b" ", b"\r\n\r\n", b"\t \n", "\u3000\u3000".encode("gb18030"), codecs.BOM_UTF8 + b" \n"],
)
def test_empty_and_whitespace_only(data: bytes) -> None:
    with pytest.raises(EmptyDocumentError) as e:
        decode_document(data, WHERE)
    assert str(e.value).startswith(WHERE + ": ")
    assert ("0 bytes" if not data else "no text") in str(e.value)


# ---- forced encodings ---------------------------------------------------------------


def test_forced_right() -> None:
    data = NOTE.encode("gb18030")
    assert decode_document(data, WHERE, encoding="gb18030") == Decoded(NOTE, "gb18030", len(NOTE))
    assert decode_document(data, WHERE, encoding="GBK").encoding == "gbk"
    assert decode_document(NOTE.encode(), WHERE, encoding="UTF8").encoding == "utf-8"
    assert decode_document(NOTE.encode(), WHERE, encoding="utf-8-sig").encoding == "utf-8"
    assert decode_document(NOTE.encode("utf-16-le"), WHERE, encoding="utf-16-le").text == NOTE


def test_forced_strips_its_own_bom() -> None:
    d = decode_document(codecs.BOM_UTF8 + NOTE.encode(), WHERE, encoding="utf-8")
    assert (d.text, d.encoding) == (NOTE, "utf-8-sig")
    d = decode_document(codecs.BOM_UTF16_BE + NOTE.encode("utf-16-be"), WHERE, encoding="utf-16")
    assert (d.text, d.encoding) == (NOTE, "utf-16-be")
    with pytest.raises(BinaryContentError):  # FF FE 00 00: BOM and NUL under utf-16, not UTF-32
        decode_document(codecs.BOM_UTF16_LE + b"\x00\x00", WHERE, encoding="utf-16-le")


def test_forced_wrong() -> None:
    with pytest.raises(
        UndecodableTextError, match=r"not valid utf-8 \(the forced encoding\): byte 0x"
    ):
        decode_document(NOTE.encode("gb18030"), WHERE, encoding="utf-8")
    with pytest.raises(
        EncodingConflictError, match=r"encoding=gb18030 was forced .* UTF-8 byte-order"
    ):
        decode_document(codecs.BOM_UTF8 + NOTE.encode(), WHERE, encoding="gb18030")
    with pytest.raises(EncodingConflictError):
        decode_document(codecs.BOM_UTF16_BE + NOTE.encode("utf-16-be"), WHERE, encoding="utf-16-le")
    with pytest.raises(UndecodableTextError, match=r"no byte-order mark"):
        decode_document(NOTE.encode("utf-16-le"), WHERE, encoding="utf-16")
    assert issubclass(EncodingConflictError, UndecodableTextError)


def test_forced_still_checks_for_binary() -> None:
    with pytest.raises(BinaryContentError, match=r"NUL"):
        decode_document(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", WHERE, encoding="latin-1")


@pytest.mark.parametrize("name", ["no-such-codec", "base64", "rot13", ""])
def test_bad_encoding_option(name: str) -> None:
    with pytest.raises(OptionError, match=r"^encoding: "):
        decode_document(b"x", WHERE, encoding=name)


def test_resolve_encoding() -> None:
    assert [resolve_encoding(n) for n in ("auto", "AUTO", "cp936", "GB2312", "UTF-16LE")] == [
        "auto",
        "auto",
        "gbk",
        "gb2312",
        "utf-16-le",
    ]


# ---- undecodable, binary, oversized -------------------------------------------------


def test_undecodable_names_both_offsets() -> None:
    data = NOTE.encode("gb18030")[:-1]  # cut inside the last character
    with pytest.raises(UndecodableTextError) as e:
        decode_document(data, WHERE)
    msg = str(e.value)
    assert msg.startswith(WHERE + ": neither UTF-8 (byte 0x")
    assert re.search(r"nor GB18030 \((byte 0x[0-9A-F]{2} at offset|truncated at) \d+\)", msg)
    assert isinstance(e.value, MemberError)


def test_undecodable_offset_is_the_bad_byte() -> None:
    data = "诊断：肺炎".encode("gb18030") + b"\xff" + "。".encode("gb18030")
    with pytest.raises(UndecodableTextError, match=r"GB18030 \(byte 0xFF at offset 10\)"):
        decode_document(data, WHERE)


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (codecs.BOM_UTF8 + b"ok\xc3(", 5),
        (codecs.BOM_UTF16_LE + "好".encode("utf-16-le") + b"\x00\xd8", 4),  # lone surrogate
    ],
)
def test_bad_bytes_after_a_bom(data: bytes, offset: int) -> None:
    with pytest.raises(
        UndecodableTextError, match=rf"byte-order mark but is not valid .* {offset}\)"
    ):
        decode_document(data, WHERE)


def test_odd_length_utf16() -> None:
    with pytest.raises(UndecodableTextError, match=r"UTF-16-LE"):
        decode_document(codecs.BOM_UTF16_LE + "好".encode("utf-16-le") + b"\x41", WHERE)


def test_binary_junk_named_txt() -> None:
    junk = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + random.Random(7).randbytes(3000)
    with pytest.raises(BinaryContentError) as e:
        decode_document(junk, WHERE)
    assert str(e.value) == f"{WHERE}: NUL byte at offset 8: binary content, not text"


def test_random_bytes_without_nul_are_binary() -> None:
    junk = bytes(b or 1 for b in random.Random(3).randbytes(4000))
    with pytest.raises(BinaryContentError, match=r"control bytes in 4000"):
        decode_document(junk, WHERE)


def test_control_characters() -> None:
    sparse = ("正常文本。" * 100) + "\x1b" + "。"
    assert decode_document(sparse.encode("gb18030"), WHERE).text == sparse  # 1 in 502: text
    dense = "正常\x07文本\x01" * 20
    with pytest.raises(
        BinaryContentError, match=r"40 control characters in 120 \(first at byte offset 4\)"
    ):
        decode_document(dense.encode("gb18030"), WHERE)
    with pytest.raises(BinaryContentError, match=r"a NUL character"):
        decode_document(codecs.BOM_UTF16_LE + "好\x00".encode("utf-16-le"), WHERE)


def test_utf16_without_bom_gets_a_hint() -> None:
    with pytest.raises(BinaryContentError, match=r"encoding=utf-16-le"):
        decode_document("BP 120/80 mmHg, HR 72".encode("utf-16-le"), WHERE)
    with pytest.raises(BinaryContentError, match=r"encoding=utf-16-be"):
        decode_document("BP 120/80 mmHg, HR 72".encode("utf-16-be"), WHERE)


def test_oversized() -> None:
    data = NOTE.encode()
    assert decode_document(data, WHERE, max_doc_bytes=len(data)).text == NOTE
    with pytest.raises(DocumentTooLargeError, match=rf"{len(data)} bytes, above maxDocBytes=10;"):
        decode_document(data, WHERE, max_doc_bytes=10)
    with pytest.raises(DocumentTooLargeError):
        check_document_size(DEFAULT_MAX_DOC_BYTES + 1, WHERE)
    check_document_size(DEFAULT_MAX_DOC_BYTES, WHERE)
    assert DEFAULT_MAX_DOC_BYTES == 16 * 1024 * 1024


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "16"])
def test_bad_max_doc_bytes(bad: object) -> None:
    with pytest.raises(OptionError, match=r"maxDocBytes"):
        decode_document(b"x", WHERE, max_doc_bytes=bad)  # type: ignore[arg-type]


# ---- NFC ------------------------------------------------------------------------------


def test_nfc_only_when_asked() -> None:
    text = "Cafe\u0301，神經\uf9b5"  # e + combining acute; U+F9B5 a CJK compatibility ideograph
    data = text.encode("utf-8")
    assert decode_document(data, WHERE).text == text
    d = decode_document(data, WHERE, normalize="NFC")
    assert d.text == unicodedata.normalize("NFC", text) == "Café，神經例"
    assert d.n_chars == len(d.text) == len(text) - 1
    with pytest.raises(OptionError, match=r"normalize"):
        decode_document(data, WHERE, normalize="NFKC")  # type: ignore[arg-type]


# ---- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls",
    [
        BinaryContentError,
        DocumentTooLargeError,
        EmptyDocumentError,
        EncodingConflictError,
        PathPatternMismatchError,
        UndecodableTextError,
        UnsupportedEncodingError,
    ],
)
def test_error_classes(cls: type[MemberError]) -> None:
    assert issubclass(cls, MemberError)
    assert cls.__doc__ and len(cls.__doc__) > 80  # says when it is raised and what to do
    assert cls.__module__ == "iac_spark.text.errors"


def test_error_text_names_where() -> None:
    with pytest.raises(MemberError) as e:
        decode_document(b"", WHERE)
    assert error_text(e.value) == f"EmptyDocumentError: {WHERE}: 0 bytes, an empty document"


def test_decoded_is_frozen() -> None:
    d = decode_document(b"ok", WHERE)
    with pytest.raises(AttributeError):
        d.text = "x"  # type: ignore[misc]


# ---- path fields ------------------------------------------------------------------------

MEMBER = "XJ/Patient_00000001/2024-01-01/入院记录_20240101000000.txt"
FIELDS = PathFields(
    institution="XJ",
    patient_id="Patient_00000001",
    encounter="2024-01-01",
    doc_type="入院记录",
    doc_timestamp="20240101000000",
    doc_id="Patient_00000001/2024-01-01/入院记录_20240101000000",
)


@pytest.mark.parametrize(
    "path",
    [
        MEMBER,
        "export/" + MEMBER,
        "/data/load_root/hospital/" + MEMBER,
        MEMBER.replace("/", "\\"),
        "C:\\exports\\" + MEMBER.replace("/", "\\"),
        "inner/batch.zip!" + MEMBER,
        "a.zip!b/c.zip!export/" + MEMBER,
    ],
)
def test_default_pattern(path: str) -> None:
    assert path_fields(path) == FIELDS


def test_fields_details() -> None:
    f = path_fields("XJ/P1/2024-01-01/出院_小结_20240105160000.TXT")
    assert (f.doc_type, f.doc_timestamp, f.doc_id) == (
        "出院_小结",
        "20240105160000",
        "P1/2024-01-01/出院_小结_20240105160000",
    )
    assert isinstance(f.doc_timestamp, str)
    assert make_doc_id("P", "E", "T", "20240101000000") == "P/E/T_20240101000000"


@pytest.mark.parametrize(
    "path",
    [
        "XJ/notes/readme.txt",
        "Patient_00000001/2024-01-01/入院记录_20240101000000.txt",  # no institution folder
        "XJ/Patient_00000001/2024-01-01/入院记录_2024010100000.txt",  # 13 digits
        "XJ/Patient_00000001/2024-01-01/入院记录_20241301000000.txt",  # month 13
        "XJ/Patient_00000001/2024-01-01/入院记录_20240101250000.txt",  # hour 25
        "XJ/Patient_00000001/2024-01-01/入院记录_20240101000000.txt.bak",
        "XJ/Patient_00000001/2024-01-01/入院记录_20240101000000.txt#2",  # duplicate name in a zip
        "XJ/Patient_00000001/2024-01-01/入院记录20240101000000.txt",  # no underscore
        "XJ/Patient_00000001/2024-01-01/_20240101000000.txt",  # no doc type
        "XJ/Patient_00000001/2024-01-01/入院记录_２０２４０１０１０００００００.txt",  # full-width digits
        "XJ/Patient_00000001/2024-01-01/",
    ],
)
def test_mismatch(path: str) -> None:
    where = f"/d/a.zip!{path}"
    with pytest.raises(PathPatternMismatchError) as e:
        path_fields(path, where=where)
    msg = str(e.value)
    assert msg.startswith(where + ": ")
    assert (
        "does not match pathPattern (INSTITUTION/PATIENT_ID/ENCOUNTER/DOCTYPE_YYYYMMDDHHMMSS.txt)"
        in msg
    )
    assert isinstance(e.value, MemberError)


def test_mismatch_where_defaults_to_path() -> None:
    with pytest.raises(PathPatternMismatchError, match=r"^x\.txt: path 'x\.txt' does not match"):
        path_fields("x.txt")


def test_gbk_member_names_without_utf8_flag(tmp_path: Path) -> None:
    path = tmp_path / "gbk.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(RawNameZipInfo(MEMBER.encode("gbk")), NOTE.encode("gb18030"))
        zf.writestr(
            RawNameZipInfo(("export/" + MEMBER.replace("入院", "出院")).encode("gbk")), b"x"
        )
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        assert all(not info.flag_bits & 0x800 for info in infos)
        assert infos[0].filename != MEMBER  # zipfile alone reads cp437 mojibake
        names = [decode_member_name(info) for info in infos]
        data = zf.read(infos[0])
    assert path_fields(names[0]) == FIELDS
    assert path_fields(names[1]).doc_type == "出院记录"
    assert decode_document(data, f"{path}!{names[0]}").text == NOTE


def test_custom_pattern_without_institution() -> None:
    pattern = r"(?P<patient_id>P\d+)/(?P<encounter>[^/]+)/(?P<doc_type>[^/_]+)_(?P<doc_timestamp>\d{8})\.txt"
    f = path_fields("root/XJ/P7/e1/病程_20240101.txt", pattern)
    assert (f.institution, f.patient_id, f.encounter, f.doc_id) == (
        None,
        "P7",
        "e1",
        "P7/e1/病程_20240101",
    )
    assert path_fields("root/XJ/P7/e1/病程_20240101.txt", compile_path_pattern(pattern)) == f


def test_custom_pattern_shortest_trailing_run_wins() -> None:
    pattern = r"(?P<institution>.+)/(?P<patient_id>[^/]+)/(?P<encounter>[^/]+)/(?P<doc_type>[^/]+)_(?P<doc_timestamp>[0-9]+)\.txt"
    assert path_fields("export/XJ/P/E/T_1.txt", pattern).institution == "XJ"


def test_custom_pattern_extra_groups_and_flat_layout() -> None:
    pattern = (
        r"(?P<institution>[A-Z]+)_(?P<patient_id>\d+)_(?P<encounter>V\d+)_(?P<doc_type>[^_/]+)"
        r"_(?P<doc_timestamp>\d{14})(?P<ext>\.txt)"
    )
    f = path_fields("dump/XJ_0042_V3_入院记录_20240101083000.txt", pattern)
    assert (f.institution, f.patient_id, f.encounter, f.doc_type) == (
        "XJ",
        "0042",
        "V3",
        "入院记录",
    )


def test_custom_pattern_leaving_a_required_group_empty() -> None:
    pattern = r"(?P<patient_id>[^/]+)/(?P<encounter>[^/]*)/(?P<doc_type>[^/]+)_(?P<doc_timestamp>\d+)(?:\.txt)"
    with pytest.raises(PathPatternMismatchError, match=r"only leaving encounter empty"):
        path_fields("P1//入院_1.txt", pattern)
    optional = r"(?:(?P<institution>[^/]+)/)?(?P<patient_id>[^/]+)/(?:(?P<encounter>E\d)/)?(?P<doc_type>[^/]+)_(?P<doc_timestamp>\d+)\.txt"
    with pytest.raises(PathPatternMismatchError, match=r"only leaving encounter empty"):
        path_fields("P1/入院_1.txt", optional)
    assert path_fields("X/P1/E1/入院_1.txt", optional).encounter == "E1"  # a longer run


@pytest.mark.parametrize(
    ("pattern", "match"),
    [
        (r"(?P<patient_id>[^/]+", r"pathPattern is not a valid regular expression"),
        (
            r"(?P<patient_id>[^/]+)/(?P<doc_type>.+)\.txt",
            r"lacks the named group\(s\) encounter, doc_timestamp",
        ),
        (
            r"(?P<patient>[^/]+)/(?P<encounter>[^/]+)/(?P<doc_type>.+)_(?P<doc_timestamp>\d+)",
            r"patient_id",
        ),
        ("", r"pathPattern must be a non-empty"),
    ],
)
def test_bad_patterns(pattern: str, match: str) -> None:
    with pytest.raises(OptionError, match=match) as e:
        compile_path_pattern(pattern)
    assert "pathPattern" in str(e.value)


def test_default_pattern_is_valid_and_cached() -> None:
    assert compile_path_pattern(DEFAULT_PATH_PATTERN) is compile_path_pattern(DEFAULT_PATH_PATTERN)
    assert set(compile_path_pattern(DEFAULT_PATH_PATTERN).groupindex) == {
        "institution",
        "patient_id",
        "encounter",
        "doc_type",
        "doc_timestamp",
    }


def test_no_pyspark_in_the_text_package() -> None:
    import subprocess
    import sys

    code = "import sys, iac_spark.text; print('pyspark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
