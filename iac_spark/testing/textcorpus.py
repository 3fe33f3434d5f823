"""Deterministic synthetic Chinese clinical-notes corpus (no network, no downloads).

Hospitals keep notes as ``.txt`` files laid out as
``INSTITUTION/PATIENT_ID/ENCOUNTER/DOCTYPE_YYYYMMDDHHMMSS.txt``, often GB18030, often
zipped. This module writes look-alike corpora for tests, benchmarks and the demo.

Corpus layout
-------------
Patients ``Patient_00000001``, ``Patient_00000002``, ... belong to the institutions
of the spec in turn. Each has ``docs_per_patient`` notes spread over encounters
(admission dates, ``YYYY-MM-DD``; one encounter per four notes): an admission note
(入院记录) first, a discharge summary (出院小结) last, progress / lab / surgery /
consult / nursing notes between, each a day apart, so doc_ids never collide.
Texts are Chinese clinical prose (主诉, 现病史, 既往史, 体格检查, 辅助检查, 诊断 ...)
with numbers and units (体温38.2℃, 血压146/88mmHg, 白细胞11.2×10^9/L ...),
occasionally a name with a character outside GB2312 (䶮, 堃, 𠮷), some with CRLF
line ends; lengths 20..40 characters for ``short_fraction`` of them, log-uniform
from 60 to ``max_chars`` for the rest.

Encodings are dealt out over all notes in the exact proportions of
``spec.encodings`` (``gb18030``, ``utf-8``, ``utf-8-sig``, ``utf-16-le``,
``utf-16-be``: the names :func:`iac_spark.text.decode_document` reports; UTF-16
always with a BOM). ``zip_fraction`` of the patients have their notes in deflate
zips, ``patients_per_zip`` to a zip (``zips/<PATIENT_ID>.zip``, or
``zips/batch_NNNNN.zip``); the others are bare files under the root at their layout
path. Of the zips, ``gbk_names_fraction`` store member names as GBK bytes without
the UTF-8 flag, ``nested_fraction`` hold their notes in an inner zip
(``inner/<stem>.zip``, members named ``inner/<stem>.zip!XJ/...``), and
``prefix_fraction`` put the notes under a leading ``export/`` folder.

``junk`` adds members that must not become documents: ``license`` (a ``LICENSE``
member in every zip, or a bare ``LICENSE``: no ``.txt`` suffix, skipped), and in
``zips/junk.zip`` (bare files when there are no zips) ``binary`` (PNG-like bytes with
NULs named like a note), ``empty`` (0 bytes; also one bare empty file),
``bom-only`` (just a UTF-8 BOM), ``undecodable`` (a GB18030 note cut inside a
character) and ``off-pattern`` (``XJ/notes/readme.txt``). Their paths use timestamps
no note uses. :attr:`TextCorpusSummary.bad` lists each with the error class the
decoder or the path fields raise.

With ``compressed_root``, a companion corpus of teacher-compressed notes (shorter
versions of the same documents, UTF-8, bare files at the same layout paths) is
written there for the ``clinical_text_pair`` layout, leaving ``unpaired`` source
notes without a partner and adding ``unpaired`` compressed notes without a source.

Determinism
-----------
Everything derives from ``seed`` (string-seeded :class:`random.Random` per
patient), zip entries get a fixed date and attributes: the same spec always writes
byte-identical files. Existing files under the root are overwritten, others left.

Example
-------
>>> import tempfile
>>> from iac_spark.testing.textcorpus import TextCorpusSpec, generate_text_corpus
>>> s = generate_text_corpus(tempfile.mkdtemp(), TextCorpusSpec(patients=2, docs_per_patient=3,
...                                                                 zip_fraction=0.5))
>>> len(s.docs), s.docs_per_patient
(6, {'Patient_00000001': 3, 'Patient_00000002': 3})
>>> [f.relative_to(s.root).as_posix() for f in s.files][-2:]
['XJ/Patient_00000002/2020-01-19/检验报告_20200120160116.txt', 'zips/Patient_00000001.zip']
>>> d = s.docs[0]
>>> d.member, d.encoding, d.n_chars, d.text[:16]
('XJ/Patient_00000001/2020-11-01/入院记录_20201101091344.txt', 'gb18030', 257, '姓名：余超，男，36岁，普外科。')

Command line::

    python -m iac_spark.testing.textcorpus OUT --patients 10000 --docs-per-patient 5 \\
        --junk all --compressed OUT_COMPRESSED --seed 0
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import functools
import io
import json
import math
import os
import random
import sys
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

__all__ = [
    "ENCODINGS",
    "JUNK_KINDS",
    "BadMember",
    "ExpectedDoc",
    "TextCorpusSpec",
    "TextCorpusSummary",
    "encode_note",
    "generate_text_corpus",
    "main",
]

ENCODINGS: tuple[str, ...] = ("gb18030", "utf-8", "utf-8-sig", "utf-16-le", "utf-16-be")
JUNK_KINDS: tuple[str, ...] = (
    "license",
    "binary",
    "empty",
    "bom-only",
    "undecodable",
    "off-pattern",
)
_BOM = {
    "utf-8-sig": codecs.BOM_UTF8,
    "utf-16-le": codecs.BOM_UTF16_LE,
    "utf-16-be": codecs.BOM_UTF16_BE,
}
_CODEC = {"utf-8-sig": "utf-8"}
_ZIP_DATE_TIME = (2024, 1, 1, 0, 0, 0)
_UTF8_FLAG = 0x800
_LICENSE = (
    "Synthetic clinical notes generated by iac_spark.testing.textcorpus (seed={seed}).\n"
    "All text and identifiers are computer generated; no real patient data is included.\n"
    "Released under CC0 1.0 Universal (public domain dedication).\n"
)


@dataclass(frozen=True)
class TextCorpusSpec:
    """What :func:`generate_text_corpus` writes (see the module docstring).

    >>> TextCorpusSpec(patients=10, docs_per_patient=5).encodings[0]
    ('gb18030', 0.6)
    """

    patients: int = 4
    docs_per_patient: int = 6
    institutions: tuple[str, ...] = ("XJ",)
    # (encoding, fraction of the notes); fractions are normalised to sum to 1
    encodings: tuple[tuple[str, float], ...] = (
        ("gb18030", 0.6),
        ("utf-8", 0.25),
        ("utf-8-sig", 0.07),
        ("utf-16-le", 0.05),
        ("utf-16-be", 0.03),
    )
    zip_fraction: float = 0.75  # of the patients; the rest are bare files
    patients_per_zip: int = 1
    gbk_names_fraction: float = 0.25  # of the zips: GBK member names, no UTF-8 flag
    nested_fraction: float = 0.25  # of the zips: notes inside an inner zip
    prefix_fraction: float = 0.25  # of the zips: notes under a leading export/ folder
    short_fraction: float = 0.1  # of the notes: 20..40 characters
    max_chars: int = 3000
    crlf_fraction: float = 0.1  # of the notes: CRLF line ends
    junk: tuple[str, ...] = ()  # JUNK_KINDS, or ("all",)
    unpaired: int = 1  # compressed companion: notes without a partner, on each side
    seed: int = 0
    keep_text: bool = True  # keep each note's text in the summary

    def __post_init__(self) -> None:
        for name in ("patients", "docs_per_patient", "unpaired", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"TextCorpusSpec.{name} must be an int >= 0, got {value!r}")
        if not isinstance(self.patients_per_zip, int) or self.patients_per_zip < 1:
            raise ValueError(
                f"TextCorpusSpec.patients_per_zip must be >= 1, got {self.patients_per_zip!r}"
            )
        if not isinstance(self.max_chars, int) or self.max_chars < 60:
            raise ValueError(
                f"TextCorpusSpec.max_chars must be an int >= 60, got {self.max_chars!r}"
            )
        for name in ("zip_fraction", "gbk_names_fraction", "nested_fraction", "prefix_fraction",
                     "short_fraction", "crlf_fraction"):  # fmt: skip
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"TextCorpusSpec.{name} must be in [0, 1], got {value!r}")
        if not self.institutions or not all(
            isinstance(i, str) and i and "/" not in i and "\\" not in i for i in self.institutions
        ):
            raise ValueError(
                f"TextCorpusSpec.institutions must be non-empty names, got {self.institutions!r}"
            )
        unknown = [e for e, _ in self.encodings if e not in ENCODINGS]
        if (
            unknown
            or not self.encodings
            or any(f < 0 for _, f in self.encodings)
            or not sum(f for _, f in self.encodings)
        ):
            raise ValueError(
                f"TextCorpusSpec.encodings must pair {', '.join(ENCODINGS)} with fractions >= 0 "
                f"(not all 0), got {self.encodings!r}"
            )
        bad = [k for k in self.junk if k not in (*JUNK_KINDS, "all")]
        if bad:
            raise ValueError(
                f"TextCorpusSpec.junk: unknown kind(s) {bad}; choose from {JUNK_KINDS} or all"
            )

    @property
    def junk_kinds(self) -> tuple[str, ...]:
        """The junk kinds to write, ``"all"`` expanded."""
        return JUNK_KINDS if "all" in self.junk else tuple(k for k in JUNK_KINDS if k in self.junk)


@dataclass(frozen=True)
class ExpectedDoc:
    """One note as the ``ziptext`` source must report it.

    ``path`` is the absolute path of its zip or bare file, ``member`` its member
    name in the zip (nested zips chained with ``!``; ``None`` for bare files).
    ``size`` / ``crc32`` are of the note's bytes, ``encoding`` is the name the
    decoder reports, ``text`` the exact text (``None`` unless ``keep_text``).
    """

    doc_id: str
    patient_id: str
    institution: str
    encounter: str
    doc_type: str
    doc_timestamp: str
    encoding: str
    path: str
    member: str | None
    size: int
    crc32: int
    n_chars: int
    text: str | None


@dataclass(frozen=True)
class BadMember:
    """A member that must not become a document: ``error`` is the error class it must
    give, or ``None`` for one that is skipped (``LICENSE``)."""

    kind: str
    path: str
    member: str | None
    error: str | None


@dataclass(frozen=True)
class TextCorpusSummary:
    """What :func:`generate_text_corpus` wrote."""

    root: Path
    files: tuple[Path, ...]  # every file written under root, sorted
    docs: tuple[ExpectedDoc, ...]
    bad: tuple[BadMember, ...]
    compressed_root: Path | None = None
    compressed_files: tuple[Path, ...] = ()
    compressed_docs: tuple[ExpectedDoc, ...] = ()
    unpaired_sources: tuple[str, ...] = ()  # doc_ids of notes without a compressed partner
    unpaired_compressed: tuple[str, ...] = ()  # doc_ids of compressed notes without a source
    docs_per_patient: dict[str, int] = field(default_factory=dict)  # {patient_id: good notes}

    @property
    def errors(self) -> tuple[BadMember, ...]:
        """The bad members that must give error rows (``bad`` without the skipped ones)."""
        return tuple(b for b in self.bad if b.error is not None)

    def members_per_file(self) -> dict[str, int]:
        """{absolute path: number of members (notes and bad ones)} of every zip and bare file."""
        counts = Counter([d.path for d in self.docs] + [b.path for b in self.bad])
        return dict(sorted(counts.items()))

    @property
    def n_bytes(self) -> int:
        """Total bytes of the good notes."""
        return sum(d.size for d in self.docs)


# ---- note text -------------------------------------------------------------------

_SYMPTOMS = ("咳嗽", "咳痰", "发热", "胸闷", "气促", "腹痛", "腹泻", "头晕", "头痛", "乏力",
             "恶心", "呕吐", "心悸", "双下肢水肿", "关节疼痛", "食欲减退", "尿频尿急", "胸痛")  # fmt: skip
_DIAGNOSES = ("社区获得性肺炎", "慢性阻塞性肺疾病急性加重", "2型糖尿病", "高血压病3级（很高危）",
              "冠状动脉粥样硬化性心脏病", "急性胃肠炎", "脑梗死", "慢性肾脏病3期", "支气管哮喘",
              "胆囊结石伴慢性胆囊炎", "急性阑尾炎", "缺铁性贫血", "甲状腺功能减退症", "腰椎间盘突出症")  # fmt: skip
_DRUGS = ("阿莫西林克拉维酸钾", "头孢曲松钠", "左氧氟沙星", "硝苯地平控释片", "二甲双胍", "阿司匹林肠溶片",
          "阿托伐他汀钙", "奥美拉唑", "盐酸氨溴索", "布地奈德混悬液", "呋塞米", "低分子肝素钙")  # fmt: skip
_EXAMS = (
    "胸部CT",
    "腹部彩超",
    "心电图",
    "头颅MRI",
    "胸部正位片",
    "心脏彩超",
    "胃镜",
    "下肢血管彩超",
)
_FINDINGS = ("双肺下叶散在斑片状渗出影", "未见明显异常", "窦性心律，ST段轻度压低", "胆囊壁增厚毛糙，内见强回声",
             "左侧基底节区腔隙性梗死灶", "主动脉硬化", "肝内胆管未见扩张", "左心室舒张功能减低")  # fmt: skip
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
)
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰梅建国志文斌"
_RARE_GIVEN = ("䶮", "堃", "喆", "𠮷", "镕")  # outside GB2312: GBK, CJK Ext-A (䶮), Ext-B (𠮷)
_DEPTS = ("呼吸内科", "心血管内科", "消化内科", "神经内科", "内分泌科", "普外科", "骨科", "肾内科")
_HEADERS = {
    "入院记录": ("主诉：", "现病史：", "既往史：", "个人史：", "家族史：", "体格检查：", "辅助检查：",
                 "初步诊断：", "诊疗计划："),
    "病程记录": ("日常病程记录：", "查房记录：", "病情分析：", "处理意见："),
    "检验报告": ("检验项目：", "检验结果：", "结论："),
    "出院小结": ("入院情况：", "诊疗经过：", "出院情况：", "出院诊断：", "出院医嘱："),
    "手术记录": ("术前诊断：", "手术名称：", "麻醉方式：", "手术经过：", "术后诊断："),
    "会诊记录": ("会诊目的：", "病史摘要：", "会诊意见："),
    "护理记录": ("生命体征：", "护理评估：", "护理措施："),
}  # fmt: skip
_MIDDLE_TYPES = ("病程记录", "检验报告", "病程记录", "手术记录", "会诊记录", "护理记录")


def _vitals(r: random.Random) -> str:
    return (
        f"体温{r.uniform(36.0, 39.6):.1f}℃，脉搏{r.randint(58, 124)}次/分，"
        f"呼吸{r.randint(14, 28)}次/分，血压{r.randint(92, 178)}/{r.randint(56, 108)}mmHg。"
    )


def _labs(r: random.Random) -> str:
    return r.choice(
        (
            f"白细胞计数{r.uniform(3.2, 18.5):.1f}×10^9/L，中性粒细胞{r.randint(45, 92)}%，"
            f"血红蛋白{r.randint(82, 168)}g/L，血小板{r.randint(85, 420)}×10^9/L。",
            f"谷丙转氨酶{r.randint(8, 136)}U/L，肌酐{r.randint(42, 188)}μmol/L，"
            f"血钾{r.uniform(3.0, 5.6):.1f}mmol/L，血钠{r.randint(128, 146)}mmol/L。",
            f"空腹血糖{r.uniform(3.9, 16.2):.1f}mmol/L，糖化血红蛋白{r.uniform(5.0, 11.8):.1f}%。",
            f"C反应蛋白{r.uniform(0.5, 152.0):.1f}mg/L，降钙素原{r.uniform(0.02, 4.8):.2f}ng/mL。",
            f"血气分析：pH {r.uniform(7.30, 7.48):.2f}，PaO2 {r.randint(52, 98)}mmHg，"
            f"PaCO2 {r.randint(32, 58)}mmHg。",
        )
    )


def _sentence(r: random.Random, header: str) -> str:
    """One filled sentence for a section (pool material; see :func:`_sentence_pools`)."""
    s, d, n = r.choice(_SYMPTOMS), r.choice(_DIAGNOSES), r.randint(2, 30)
    unit = r.choice(("天", "周", "个月", "年"))
    if header in ("主诉：", "病史摘要："):
        return f"{s}、{r.choice(_SYMPTOMS)}{n}{unit}，加重{r.randint(1, 7)}天。"
    if header in ("现病史：", "入院情况：", "日常病程记录："):
        return r.choice(
            (
                f"患者{n}{unit}前无明显诱因出现{s}，伴{r.choice(_SYMPTOMS)}，未予特殊处理。",
                f"{r.randint(1, 9)}天前上述症状加重，夜间不能平卧，最高体温{r.uniform(37.3, 39.8):.1f}℃。",
                f"今日患者{s}较前减轻，精神、食欲可，大小便正常。",
                f"于外院就诊，予{r.choice(_DRUGS)}治疗后症状无明显缓解，遂来我院。",
            )
        )
    if header in ("既往史：", "个人史：", "家族史："):
        return r.choice(
            (
                f"{d}病史{n}年，规律服用{r.choice(_DRUGS)}。",
                f"吸烟{r.randint(5, 40)}年，每日约{r.randint(5, 40)}支，已戒烟{r.randint(1, 10)}年。",
                "否认肝炎、结核等传染病史，否认食物及药物过敏史。",
                f"父亲患{r.choice(_DIAGNOSES)}，母亲体健。",
            )
        )
    if header in ("体格检查：", "生命体征：", "护理评估：", "出院情况："):
        return r.choice(
            (
                _vitals(r),
                "神志清楚，口唇无发绀，双肺呼吸音粗，可闻及散在湿啰音。",
                f"心率{r.randint(58, 124)}次/分，律齐，各瓣膜听诊区未闻及病理性杂音。",
                f"腹软，{r.choice(('无压痛', '右下腹压痛', '剑突下轻压痛'))}，肝脾肋下未触及。",
                f"血氧饱和度{r.randint(86, 100)}%，双下肢{r.choice(('无', '轻度', '中度'))}水肿。",
            )
        )
    if header in ("辅助检查：", "检验项目：", "检验结果：", "病情分析："):
        return r.choice((_labs(r), f"{r.choice(_EXAMS)}示{r.choice(_FINDINGS)}。"))
    if header in ("初步诊断：", "出院诊断：", "术前诊断：", "术后诊断：", "结论："):
        return f"{r.randint(1, 3)}.{d}；{r.randint(2, 4)}.{r.choice(_DIAGNOSES)}。"
    if header in (
        "诊疗计划：",
        "处理意见：",
        "出院医嘱：",
        "护理措施：",
        "会诊意见：",
        "会诊目的：",
    ):
        return r.choice(
            (
                f"予{r.choice(_DRUGS)}{r.choice(('0.5g', '1g', '2g', '40mg', '10mg'))}"
                f"{r.choice(('每日一次', '每日两次', '每8小时一次'))}，注意监测肝肾功能。",
                f"完善{r.choice(_EXAMS)}及相关检验，必要时请{r.choice(_DEPTS)}会诊。",
                f"低盐低脂饮食，{r.randint(1, 4)}周后门诊复诊，不适随诊。",
                "上级医师查房后指示：继续当前治疗方案，注意监测电解质。",
            )
        )
    if header in ("手术名称：", "麻醉方式：", "手术经过："):
        return r.choice(
            (
                f"{r.choice(('腹腔镜下胆囊切除术', '阑尾切除术', '经皮冠状动脉介入治疗'))}。",
                f"{r.choice(('全身麻醉', '腰硬联合麻醉', '局部麻醉'))}，术中出血约{r.randint(5, 300)}ml。",
                f"手术顺利，历时{r.randint(30, 240)}分钟，术后安返病房。",
            )
        )
    return f"{s}，{d}。"


def _sentence_pools(seed: int) -> dict[str, tuple[str, ...]]:
    """{section header: filled sentences}: notes draw from these pools, which keeps them fast."""
    r = random.Random(f"textcorpus-pools:{seed}")
    headers = sorted({h for hs in _HEADERS.values() for h in hs})
    return {h: tuple(_sentence(r, h) for _ in range(160)) for h in headers}


def _name_line(r: random.Random) -> str:
    given = (
        r.choice(_RARE_GIVEN) if r.random() < 0.1 else "".join(r.choices(_GIVEN, k=r.randint(1, 2)))
    )
    age = r.randint(18, 92)
    return (
        f"姓名：{r.choice(_SURNAMES)}{given}，{r.choice('男女')}，{age}岁，{r.choice(_DEPTS)}。\n"
    )


def _note_text(r: random.Random, pools: dict[str, tuple[str, ...]], doc_type: str, n: int) -> str:
    """A note of exactly ``n`` characters (``\\n`` line ends)."""
    parts: list[str] = [_name_line(r)] if n > 60 and r.random() < 0.5 else []
    size = sum(map(len, parts))
    headers = _HEADERS[doc_type]
    while size < n:
        for header in headers:
            body = "".join(r.choices(pools[header], k=r.randint(1, 4)))
            parts.append(f"{header}{body}\n")
            size += len(parts[-1])
            if size >= n:
                break
    return "".join(parts)[:n]


def _compress(text: str) -> str:
    """A teacher-compressed version: a summary prefix and the first fifth, one line."""
    flat = text.replace("\r\n", "\n").replace("\n", "；")
    return "【摘要】" + flat[: max(8, len(flat) // 5)]


def encode_note(text: str, encoding: str) -> bytes:
    """The bytes of a note in one of :data:`ENCODINGS` (BOM included where the name says so).

    >>> encode_note("发热", "utf-16-be")
    b'\\xfe\\xffS\\xd1p\\xed'
    """
    return _BOM.get(encoding, b"") + text.encode(_CODEC.get(encoding, encoding))


# ---- zips -------------------------------------------------------------------------


class _RawNameZipInfo(zipfile.ZipInfo):
    """A ZipInfo whose name is written as the given raw bytes with the UTF-8 flag clear.

    :mod:`zipfile` always writes non-ASCII names as UTF-8 with the flag; archives made on
    Chinese Windows store GBK bytes without it, which only overriding zipfile's name
    encoding hook (``_encodeFilenameFlags``, stable since Python 3.0) reproduces.
    """

    def __init__(self, raw_name: bytes) -> None:
        super().__init__(raw_name.decode("cp437"), date_time=_ZIP_DATE_TIME)
        self._raw_name = raw_name

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:
        return self._raw_name, self.flag_bits & ~_UTF8_FLAG


def _zip_bytes(members: Sequence[tuple[str, bytes]], *, gbk_names: bool) -> bytes:
    """A deflate zip of ``members`` in order, fixed dates and attributes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            info = (
                _RawNameZipInfo(name.encode("gbk"))
                if gbk_names and not name.isascii()
                else zipfile.ZipInfo(name, date_time=_ZIP_DATE_TIME)
            )
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


def _archive(members: Sequence[tuple[str, bytes]], gbk_names: bool, inner: str) -> bytes:
    """The zip of ``members``; with ``inner`` (a member name), wrapped in an outer zip."""
    blob = _zip_bytes(members, gbk_names=gbk_names)
    return _zip_bytes([(inner, blob)], gbk_names=False) if inner else blob


# ---- the corpus -------------------------------------------------------------------


@dataclass
class _Note:
    patient_id: str
    institution: str
    encounter: str
    doc_type: str
    ts: str
    text: str
    encoding: str = ""

    @property
    def layout(self) -> str:
        return (
            f"{self.institution}/{self.patient_id}/{self.encounter}/{self.doc_type}_{self.ts}.txt"
        )

    @property
    def doc_id(self) -> str:
        return f"{self.patient_id}/{self.encounter}/{self.doc_type}_{self.ts}"


def _patient_notes(
    spec: TextCorpusSpec, pools: dict[str, tuple[str, ...]], index: int
) -> list[_Note]:
    r = random.Random(f"textcorpus:{spec.seed}:{index}")
    pid = f"Patient_{index + 1:08d}"
    institution = spec.institutions[index % len(spec.institutions)]
    n = spec.docs_per_patient
    encounters = max(1, math.ceil(n / 4))
    day = date(2020, 1, 1) + timedelta(days=r.randrange(0, 1700))
    notes: list[_Note] = []
    for e in range(encounters):
        count = n * (e + 1) // encounters - n * e // encounters
        for k in range(count):
            if k == 0:
                doc_type = "入院记录"
            elif k == count - 1:
                doc_type = "出院小结"
            else:
                doc_type = r.choice(_MIDDLE_TYPES)
            when = datetime.combine(day, datetime.min.time()) + timedelta(
                days=k, seconds=r.randrange(7 * 3600, 19 * 3600)
            )
            if r.random() < spec.short_fraction:
                length = r.randint(20, 40)
            else:
                length = int(math.exp(r.uniform(math.log(60), math.log(spec.max_chars))))
            text = _note_text(r, pools, doc_type, length)
            if r.random() < spec.crlf_fraction:
                text = text.replace("\n", "\r\n")
            notes.append(
                _Note(
                    pid, institution, day.isoformat(), doc_type, when.strftime("%Y%m%d%H%M%S"), text
                )
            )
        day += timedelta(days=count + r.randrange(20, 200))
    return notes


def _exact_counts(total: int, weights: Sequence[tuple[str, float]]) -> list[str]:
    """``total`` labels in the proportions of ``weights`` (largest remainder)."""
    s = sum(w for _, w in weights)
    raw = [(name, total * w / s) for name, w in weights]
    counts = {name: int(x) for name, x in raw}
    by_remainder = sorted(raw, key=lambda nx: (-(nx[1] - int(nx[1])), ENCODINGS.index(nx[0])))
    for name, _ in by_remainder[: total - sum(counts.values())]:
        counts[name] += 1
    return [name for name, _ in weights for _ in range(counts[name])]


def _pick(r: random.Random, n: int, fraction: float) -> set[int]:
    return set(r.sample(range(n), int(n * fraction + 0.5)))


class _Writer:
    """Writes files on a few threads (file creation and deflate release the GIL)."""

    def __init__(self, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="textcorpus")
        self._futures: list[Future[None]] = []
        self.written: list[Path] = []

    def write(self, path: Path, data: bytes | Callable[[], bytes]) -> None:
        self.written.append(path)
        self._futures.append(self._pool.submit(self._write, path, data))

    @staticmethod
    def _write(path: Path, data: bytes | Callable[[], bytes]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data())

    def close(self) -> tuple[Path, ...]:
        """Wait for every write (re-raising the first failure); the paths written, sorted."""
        try:
            for future in self._futures:
                future.result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        return tuple(sorted(self.written))

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _expected(note: _Note, data: bytes, path: Path, member: str | None, keep: bool) -> ExpectedDoc:
    return ExpectedDoc(
        doc_id=note.doc_id,
        patient_id=note.patient_id,
        institution=note.institution,
        encounter=note.encounter,
        doc_type=note.doc_type,
        doc_timestamp=note.ts,
        encoding=note.encoding,
        path=str(path),
        member=member,
        size=len(data),
        crc32=zlib.crc32(data),
        n_chars=len(note.text),
        text=note.text if keep else None,
    )


def _junk_items(spec: TextCorpusSpec, inst: str) -> list[tuple[str, str, bytes, str]]:
    """(kind, layout path, bytes, error class) of the junk notes (LICENSE apart)."""
    r = random.Random(f"textcorpus-junk:{spec.seed}")
    pid = "Patient_00000001"
    noise = bytes(b if i % 7 else 0 for i, b in enumerate(r.randbytes(3000)))
    cut = "患者咳嗽三天伴发热，体温三十八度。".encode("gb18030")[:-1]  # ends inside 。
    items = {
        "binary": (f"{inst}/{pid}/2019-01-01/检验报告_20190101010101.txt",
                   b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + noise, "BinaryContentError"),
        "empty": (f"{inst}/{pid}/2019-01-01/病程记录_20190101020202.txt", b"", "EmptyDocumentError"),
        "bom-only": (f"{inst}/{pid}/2019-01-01/护理记录_20190101030303.txt", codecs.BOM_UTF8,
                     "EmptyDocumentError"),
        "undecodable": (f"{inst}/{pid}/2019-01-01/会诊记录_20190101040404.txt", cut,
                        "UndecodableTextError"),
        "off-pattern": (f"{inst}/notes/readme.txt", "门诊病历说明，不是病历文件。".encode("gb18030"),
                        "PathPatternMismatchError"),
    }  # fmt: skip
    return [(k, *items[k]) for k in spec.junk_kinds if k in items]


def generate_text_corpus(
    root: str | os.PathLike[str],
    spec: TextCorpusSpec | None = None,
    *,
    compressed_root: str | os.PathLike[str] | None = None,
) -> TextCorpusSummary:
    """Write the corpus of ``spec`` under ``root`` (and its compressed companion under
    ``compressed_root``); return what was written. See the module docstring."""
    spec = spec or TextCorpusSpec()
    out = Path(root).resolve()
    out.mkdir(parents=True, exist_ok=True)
    pools = _sentence_pools(spec.seed)
    layout_rng = random.Random(f"textcorpus-layout:{spec.seed}")

    per_patient = [_patient_notes(spec, pools, i) for i in range(spec.patients)]
    all_notes = [n for notes in per_patient for n in notes]
    encodings = _exact_counts(len(all_notes), spec.encodings)
    layout_rng.shuffle(encodings)
    for note, enc in zip(all_notes, encodings, strict=True):
        note.encoding = enc

    zipped = _pick(layout_rng, spec.patients, spec.zip_fraction)
    groups: list[list[int]] = []
    for i in sorted(zipped):
        if not groups or len(groups[-1]) == spec.patients_per_zip:
            groups.append([])
        groups[-1].append(i)
    gbk = _pick(layout_rng, len(groups), spec.gbk_names_fraction)
    nested = _pick(layout_rng, len(groups), spec.nested_fraction)
    prefixed = _pick(layout_rng, len(groups), spec.prefix_fraction)
    junk = spec.junk_kinds
    docs: list[ExpectedDoc] = []
    bad: list[BadMember] = []
    keep = spec.keep_text
    license_text = _LICENSE.format(seed=spec.seed).encode()

    with _Writer() as writer:
        for g, patients in enumerate(groups):
            stem = (
                f"Patient_{patients[0] + 1:08d}"
                if spec.patients_per_zip == 1
                else f"batch_{g + 1:05d}"
            )
            path = out / "zips" / f"{stem}.zip"
            prefix = "export/" if g in prefixed else ""
            chain = f"inner/{stem}.zip!" if g in nested else ""
            members: list[tuple[str, bytes]] = []
            for i in patients:
                for note in per_patient[i]:
                    data = encode_note(note.text, note.encoding)
                    members.append((prefix + note.layout, data))
                    docs.append(_expected(note, data, path, chain + prefix + note.layout, keep))
            if "license" in junk:
                members.append(("LICENSE", license_text))
                bad.append(BadMember("license", str(path), chain + "LICENSE", None))
            writer.write(path, functools.partial(_archive, members, g in gbk, chain and chain[:-1]))

        for i in range(spec.patients):
            if i in zipped:
                continue
            for note in per_patient[i]:
                data = encode_note(note.text, note.encoding)
                path = out / note.layout
                writer.write(path, data)
                docs.append(_expected(note, data, path, None, keep))

        items = _junk_items(spec, spec.institutions[0])
        if groups and items:
            path = out / "zips" / "junk.zip"
            writer.write(
                path, _zip_bytes([(name, data) for _, name, data, _ in items], gbk_names=False)
            )
            bad.extend(BadMember(kind, str(path), name, error) for kind, name, data, error in items)
        elif items:
            for kind, name, data, error in items:
                writer.write(out / name, data)
                bad.append(BadMember(kind, str(out / name), None, error))
        if "empty" in junk and groups:  # an empty bare file too
            name = f"{spec.institutions[0]}/Patient_00000001/2019-01-02/病程记录_20190102050505.txt"
            writer.write(out / name, b"")
            bad.append(BadMember("empty", str(out / name), None, "EmptyDocumentError"))
        if "license" in junk and not groups:
            writer.write(out / "LICENSE", license_text)
            bad.append(BadMember("license", str(out / "LICENSE"), None, None))
        files = writer.close()

    summary = TextCorpusSummary(
        root=out,
        files=files,
        docs=tuple(docs),
        bad=tuple(bad),
        docs_per_patient={notes[0].patient_id: len(notes) for notes in per_patient if notes},
    )
    if compressed_root is None:
        return summary
    return _with_compressed(summary, spec, per_patient, Path(compressed_root).resolve())


def _with_compressed(
    summary: TextCorpusSummary,
    spec: TextCorpusSpec,
    per_patient: list[list[_Note]],
    croot: Path,
) -> TextCorpusSummary:
    r = random.Random(f"textcorpus-compressed:{spec.seed}")
    all_notes = [n for notes in per_patient for n in notes]
    skip = {
        all_notes[i].doc_id
        for i in r.sample(range(len(all_notes)), min(spec.unpaired, len(all_notes)))
    }
    partners = [
        _Note(
            n.patient_id, n.institution, n.encounter, n.doc_type, n.ts, _compress(n.text), "utf-8"
        )
        for n in all_notes
        if n.doc_id not in skip
    ]
    orphans = []
    for k in range(spec.unpaired if per_patient and all_notes else 0):
        base = r.choice([notes for notes in per_patient if notes])
        day = date.fromisoformat(base[-1].encounter) + timedelta(days=400 + k)
        orphans.append(
            _Note(base[0].patient_id, base[0].institution, day.isoformat(), "出院小结",
                  f"{day:%Y%m%d}1000{k % 60:02d}", "【摘要】无对应原文的压缩记录。", "utf-8")
        )  # fmt: skip
    cdocs = []
    with _Writer() as writer:
        for note in partners + orphans:
            data = note.text.encode("utf-8")
            writer.write(croot / note.layout, data)
            cdocs.append(_expected(note, data, croot / note.layout, None, spec.keep_text))
        written = writer.close()
    return dataclasses.replace(
        summary,
        compressed_root=croot,
        compressed_files=written,
        compressed_docs=tuple(cdocs),
        unpaired_sources=tuple(d.doc_id for d in summary.docs if d.doc_id in skip),
        unpaired_compressed=tuple(n.doc_id for n in orphans),
    )


# ---- command line -----------------------------------------------------------------


def _fractions(value: str) -> tuple[tuple[str, float], ...]:
    try:
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        return tuple((name.strip(), float(frac)) for name, frac in pairs)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ENC=FRACTION,..., got {value!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m iac_spark.testing.textcorpus OUT ...``: write a corpus, print a summary."""
    parser = argparse.ArgumentParser(
        prog="python -m iac_spark.testing.textcorpus",
        description="Write a deterministic synthetic Chinese clinical-notes corpus.",
    )
    d = TextCorpusSpec()
    parser.add_argument("out", metavar="OUT", type=Path)
    parser.add_argument("--patients", type=int, default=d.patients)
    parser.add_argument("--docs-per-patient", type=int, default=d.docs_per_patient)
    parser.add_argument("--institutions", default=",".join(d.institutions), help="comma-separated")
    parser.add_argument(
        "--encodings",
        type=_fractions,
        default=d.encodings,
        help="ENC=FRACTION,... of " + ", ".join(ENCODINGS) + " (default %(default)s)",
    )
    parser.add_argument("--zip-fraction", type=float, default=d.zip_fraction)
    parser.add_argument("--patients-per-zip", type=int, default=d.patients_per_zip)
    parser.add_argument(
        "--gbk-names", type=float, default=d.gbk_names_fraction, help="fraction of zips"
    )
    parser.add_argument("--nested", type=float, default=d.nested_fraction, help="fraction of zips")
    parser.add_argument(
        "--prefixed", type=float, default=d.prefix_fraction, help="fraction of zips"
    )
    parser.add_argument("--short-fraction", type=float, default=d.short_fraction)
    parser.add_argument("--max-chars", type=int, default=d.max_chars)
    parser.add_argument(
        "--junk", default="", help="comma-separated: " + ", ".join(JUNK_KINDS) + ", or all"
    )
    parser.add_argument("--compressed", type=Path, default=None, metavar="DIR",
                        help="also write the teacher-compressed companion corpus here")  # fmt: skip
    parser.add_argument("--unpaired", type=int, default=d.unpaired)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--manifest", type=Path, default=None, metavar="FILE",
                        help="write the expected notes as JSON lines here")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        spec = TextCorpusSpec(
            patients=args.patients,
            docs_per_patient=args.docs_per_patient,
            institutions=tuple(i.strip() for i in args.institutions.split(",") if i.strip()),
            encodings=args.encodings,
            zip_fraction=args.zip_fraction,
            patients_per_zip=args.patients_per_zip,
            gbk_names_fraction=args.gbk_names,
            nested_fraction=args.nested,
            prefix_fraction=args.prefixed,
            short_fraction=args.short_fraction,
            max_chars=args.max_chars,
            junk=tuple(k.strip() for k in args.junk.split(",") if k.strip()),
            unpaired=args.unpaired,
            seed=args.seed,
            keep_text=args.manifest is not None,
        )
    except ValueError as e:
        parser.error(str(e))
    start = time.perf_counter()
    s = generate_text_corpus(args.out, spec, compressed_root=args.compressed)
    secs = time.perf_counter() - start
    if args.manifest is not None:
        with open(args.manifest, "w", encoding="utf-8") as f:
            for doc in s.docs:
                f.write(json.dumps(asdict(doc), ensure_ascii=False) + "\n")
    n_zips = sum(1 for p in s.files if p.suffix == ".zip")
    print(
        f"{len(s.docs)} notes ({s.n_bytes / 1e6:.1f} MB) for {len(s.docs_per_patient)} patients: "
        f"{n_zips} zips, {len(s.files) - n_zips} bare files, {len(s.bad)} junk members"
        + (
            f"; {len(s.compressed_docs)} compressed notes in {s.compressed_root}"
            if s.compressed_root
            else ""
        )
        + f"; {secs:.1f}s ({len(s.docs) / max(secs, 1e-9):,.0f} notes/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
