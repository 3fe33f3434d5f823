"""Clinical text benchmark: the text build end to end vs a single-process baseline, and the codec.

Target (issue 8, item 7): a text build (scan + plan + pack + merge + catalog commit) runs
at >= 1.5x the documents/s of a single-process baseline measured in the same run, on
2 cores, on a corpus of >= 50,000 notes. Item 2: pick the ``clinical_text`` record codec
by measurement.

Corpus: ``iac_spark.testing.textcorpus`` with :data:`FULL_SPEC`: 10,000 patients x 5 notes
= 50,000 Chinese notes (GB18030 60 %, UTF-8 25 %, UTF-8 with BOM 7 %, UTF-16 with BOM 8 %),
75 % of the patients in deflate zips of 50 patients (a quarter of the zips with GBK member
names, a quarter nested, a quarter under ``export/``), the rest bare files. Cached under
``bench_out/textcorpus-<key>/``.

Part 1, build (variants interleaved, medians):

ours          ``iac_spark.catalog.build(spark, [root], out, kind="text", executor="spark",
              codec=<--codec>)`` in a started, warmed-up local[2] session: discovery +
              survey, incremental plan against the (empty) catalog, ``ziptext`` scan tasks
              (decode every note), the driver plan, pack tasks (one record per patient,
              the adapters' encoding, the codec), merge, Delta commit of packs / records /
              documents / sources / errors / runs. Fresh ``out`` per run.
baseline      one process, no Spark: read every file (zip members, nested zips, bare files),
              decode it with ``iac_spark.text.decode_document`` and take its fields with
              ``iac_spark.text.path_fields`` (the same decoding as ours, so both sides make
              the same documents), group by patient, sort each patient's notes by
              (doc_timestamp, doc_id), then ``iatro.iac.adapters.text
              .build_clinical_text_pack(path, patients, quality=Q)``: brotli-11 (the
              adapters' default, what the issue names) and brotli-<--baseline-quality>
              (fair about compression level).
(ref)         ours with brotli-<--baseline-quality> (same codec as that baseline);
              the baseline with ours' codec (``VariableRecordPack.build`` with the same
              header, index and slide tables as ``build_clinical_text_pack``);
              ours with ``executor="local"`` (the same build in this one process, no JVM).

Throughput: documents/s and MB/s of note bytes (the files as stored, in their encodings).
Before timing, our packs are checked against the baseline's documents: every patient's
doc_ids, texts, types, encounters, timestamps and sources read back identical through
``ClinicalTextReader``.

Part 2, codec (same notes, grouped per patient: one record per patient, payload =
``iac_spark.packing.adapters.encode_text_patient``, a fixed random sample of patients):
for each codec through ``iatro.iac.Codec.create``: stored size, encode and decode MB/s
(one thread, one record at a time, as a pack task and a loader do), and random
single-record read latency through ``iatro.iac.adapters.text.ClinicalTextReader``
(``read_patient``: pread + decode + manifest JSON + UTF-8), one pack per codec, kept open.

    .venv/bin/python bench/text.py            # full: 50,000 notes, 3 runs
    .venv/bin/python bench/text.py --quick    # smoke test: 2,000 notes, 1 run
    .venv/bin/python bench/text.py --part codec  # only the codec measurement
"""

from __future__ import annotations

import cProfile
import dataclasses
import fnmatch
import hashlib
import io
import json
import os
import posixpath
import pstats
import random
import re
import shutil
import statistics
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common
import pyarrow as pa
from iatro.iac import Codec, VariableRecordPack
from iatro.iac.adapters.text import (
    ClinicalDoc,
    ClinicalTextReader,
    PatientText,
    build_clinical_text_pack,
)

from iac_spark import catalog
from iac_spark.errors import location
from iac_spark.packing.adapters import encode_pair_patient, encode_text_patient, pair_doc
from iac_spark.packing.layout import RecordCodec
from iac_spark.testing.textcorpus import TextCorpusSpec, generate_text_corpus
from iac_spark.text import decode_document, path_fields

#: Issue 8 item 7 target: ours / single-process baseline (documents/s), 2 cores.
TARGET_RATIO = 1.5

#: Full corpus: 10,000 patients x 5 notes = 50,000 notes (~72 MB), 150 zips + 12,500 bare files.
FULL_SPEC = TextCorpusSpec(
    patients=10_000, docs_per_patient=5, patients_per_zip=50, seed=0, keep_text=False
)
#: --quick corpus: 400 patients x 5 notes = 2,000 notes, same proportions.
QUICK_SPEC = TextCorpusSpec(
    patients=400, docs_per_patient=5, patients_per_zip=20, seed=0, keep_text=False
)

#: ``max_partition_bytes`` of the "2 scan tasks" reference variant: above the corpus' total
#: member weight (50,000 notes x 64 KiB ``MEMBER_COST`` = ~3 GiB), so the scan plans one task
#: per core instead of one per 128 MiB of weight (21 tasks), as a text-sized member cost would.
SCAN_PARTITION_BYTES_2 = 4 * 1024**3

#: Part 2: the codecs the issue asks about (name, params), in table order.
CODECS: tuple[tuple[str, dict[str, int]], ...] = (
    ("zstd", {"level": 3}),
    ("zstd", {"level": 9}),
    ("zstd", {"level": 19}),
    ("brotli", {"quality": 5}),
    ("brotli", {"quality": 9}),
    ("brotli", {"quality": 11}),
)


def codec_label(name: str, params: dict[str, Any]) -> str:
    """``zstd-3`` / ``brotli-11``."""
    level = params.get("level", params.get("quality"))
    return f"{name}-{level}" if level is not None else name


def parse_codec(text: str) -> RecordCodec:
    """``zstd-3`` / ``brotli-5`` → :class:`RecordCodec`."""
    m = re.fullmatch(r"(zstd|brotli)-(\d+)", text)
    if not m:
        raise SystemExit(f"--codec: expected zstd-N or brotli-N, got {text!r}")
    key = "level" if m.group(1) == "zstd" else "quality"
    return RecordCodec.create(m.group(1), **{key: int(m.group(2))})


# --------------------------------------------------------------------------------------
# Corpus cache
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextCorpus:
    root: Path
    key: str
    spec: TextCorpusSpec
    notes: int
    note_bytes: int  # the notes' bytes as stored (their encodings), uncompressed
    zips: int
    bare_files: int
    disk_bytes: int  # zips (deflated) + bare files
    generated_seconds: float | None  # None when reused from the cache

    def describe(self) -> str:
        s = self.spec
        return (
            f"{self.notes:,} notes of {s.patients:,} patients ({s.docs_per_patient} each), "
            f"{self.note_bytes / common.MB:,.1f} MB of note bytes; {self.zips} zips "
            f"({s.patients_per_zip} patients each) + {self.bare_files:,} bare files, "
            f"{self.disk_bytes / common.MB:,.1f} MB on disk, at {self.root}"
        )


def text_spec_key(spec: TextCorpusSpec) -> str:
    blob = json.dumps(dataclasses.asdict(spec), sort_keys=True, default=str).encode()
    return f"p{spec.patients}x{spec.docs_per_patient}-{hashlib.sha1(blob).hexdigest()[:10]}"


def get_text_corpus(spec: TextCorpusSpec, out: Path, *, pairs: bool = False) -> TextCorpus:
    """The corpus of ``spec`` under ``out/textcorpus-<key>/``: reused if complete, else generated.

    With ``pairs``, under ``out/textpairs-<key>/`` with its teacher-compressed companion in
    ``compressed/`` (see :func:`compressed_root`).
    """
    key = text_spec_key(spec)
    name = f"{'textpairs' if pairs else 'textcorpus'}-{key}"
    root = (out / name / "source" if pairs else out / name).resolve()
    marker = out / f"{name}.json"  # beside the root: the corpus folder holds only notes
    if marker.exists():
        info = json.loads(marker.read_text())
        complete = all(os.path.exists(root / f) for f in info["files"])
        if complete and (not pairs or compressed_root(root).is_dir()):
            return TextCorpus(root, key, spec, info["notes"], info["note_bytes"], info["zips"],
                              info["bare_files"], info["disk_bytes"], None)  # fmt: skip
    print(f"generating text corpus {name} under {root} ...", flush=True)
    shutil.rmtree(out / name, ignore_errors=True)
    t0 = time.perf_counter()
    s = generate_text_corpus(root, spec, compressed_root=compressed_root(root) if pairs else None)
    elapsed = time.perf_counter() - t0
    files = [f.relative_to(s.root).as_posix() for f in s.files]
    zips = sum(1 for f in files if f.endswith(".zip"))
    info = {
        "spec": dataclasses.asdict(spec),
        "files": files,
        "notes": len(s.docs),
        "note_bytes": s.n_bytes,
        "zips": zips,
        "bare_files": len(files) - zips,
        "disk_bytes": sum(f.stat().st_size for f in s.files),
        "generated_seconds": elapsed,
    }
    marker.write_text(json.dumps(info, indent=1, ensure_ascii=False))
    print(f"generated in {elapsed:.1f} s", flush=True)
    return TextCorpus(root, key, spec, info["notes"], info["note_bytes"], zips,
                      info["bare_files"], info["disk_bytes"], elapsed)  # fmt: skip


def compressed_root(root: Path) -> Path:
    """Where a pair corpus keeps its teacher-compressed notes (beside ``source/``)."""
    return root.parent / "compressed"


# --------------------------------------------------------------------------------------
# Baseline: one process reads, decodes, groups and packs with the adapters' builder
# --------------------------------------------------------------------------------------


def _member_name(info: zipfile.ZipInfo) -> str:
    """A zip member's name: UTF-8 flag, else the raw bytes as UTF-8, GB18030, cp437."""
    if info.flag_bits & 0x800 or info.filename.isascii():
        return info.filename
    raw = info.filename.encode("cp437")
    for enc in ("utf-8", "gb18030"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            pass
    return info.filename


def _is_note(name: str) -> bool:
    return fnmatch.fnmatchcase(posixpath.basename(name).lower(), "*.txt")


def _zip_notes(zf: zipfile.ZipFile, path: str, chain: str) -> Iterator[tuple[str, str, bytes]]:
    for info in zf.infolist():
        if info.is_dir():
            continue
        name = _member_name(info)
        if name.lower().endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(zf.read(info))) as inner:
                yield from _zip_notes(inner, path, f"{chain}{name}!")
        elif _is_note(name):
            yield f"{chain}{name}", name, zf.read(info)


def iter_notes(root: str) -> Iterator[tuple[str, str | None, str, bytes]]:
    """(path, member, name for the path fields, bytes) of every note under ``root``."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            path = os.path.join(dirpath, fn)
            if fn.lower().endswith(".zip"):
                with zipfile.ZipFile(path) as zf:
                    for member, name, data in _zip_notes(zf, path, ""):
                        yield path, member, name, data
            elif _is_note(fn):
                with open(path, "rb") as fh:
                    data = fh.read()
                yield path, None, os.path.relpath(path, root).replace(os.sep, "/"), data


@dataclass
class Notes:
    """The baseline's documents, grouped by patient, and what reading them cost."""

    patients: list[PatientText]
    docs: int
    note_bytes: int
    read_s: float  # file reads + inflate
    decode_s: float  # decode_document + path_fields + ClinicalDoc


def read_notes(root: str) -> Notes:
    """Read, decode and group every note of ``root`` by patient (the baseline's first half)."""
    by_patient: dict[str, tuple[str, list[ClinicalDoc]]] = {}
    docs = nbytes = 0
    read_s = decode_s = 0.0
    it = iter_notes(root)
    while True:
        t0 = time.perf_counter()
        item = next(it, None)
        t1 = time.perf_counter()
        read_s += t1 - t0
        if item is None:
            break
        path, member, name, data = item
        where = location(path, member)
        d = decode_document(data, where)
        f = path_fields(name, where=where)
        entry = by_patient.setdefault(f.patient_id, (f.institution or "", []))
        entry[1].append(
            ClinicalDoc(doc_id=f.doc_id, text=d.text, doc_type=f.doc_type, encounter=f.encounter,
                        source=where, doc_timestamp=f.doc_timestamp)
        )  # fmt: skip
        docs += 1
        nbytes += len(data)
        decode_s += time.perf_counter() - t1
    t0 = time.perf_counter()
    patients = []
    for pid in sorted(by_patient):
        institution, pdocs = by_patient[pid]
        pdocs.sort(key=lambda d: (d.doc_timestamp, d.doc_id))
        patients.append(PatientText(pid, institution, pdocs))
    decode_s += time.perf_counter() - t0
    return Notes(patients, docs, nbytes, read_s, decode_s)


def text_tables(patients: list[PatientText]) -> tuple[pa.Table, pa.Table]:
    """(slide table, index table) of a ``clinical_text`` pack, as ``build_clinical_text_pack``."""
    slides = pa.table(
        {"slide_idx": pa.array([0], pa.uint8()), "slide_id": ["clinical_text"], "patient_id": [""]}
    )
    index = pa.table(
        {
            "patient_id": [p.patient_id for p in patients],
            "institution": [p.institution for p in patients],
            "num_docs": pa.array([len(p.docs) for p in patients], pa.uint32()),
        }
    )
    return slides, index


def pack_like_adapters(out_file: str, patients: list[PatientText], codec: RecordCodec) -> None:
    """``build_clinical_text_pack`` with another codec: same header, tables and payloads."""
    slides, index = text_tables(patients)
    VariableRecordPack.build(
        out_file,
        payload_type="clinical_text",
        slide_table=slides,
        index_table=index,
        objects=[encode_text_patient(p.patient_id, p.institution, p.docs) for p in patients],
        codec=codec.codec(),
        extra_header={"text_schema_version": 1},
        streaming=True,
    )


def baseline(root: str, out_file: str, codec: RecordCodec) -> dict[str, Any]:
    """The single-process baseline: read + decode + group, then one pack."""
    notes = read_notes(root)
    t0 = time.perf_counter()
    if codec.name == "brotli" and set(codec.params) <= {"quality"}:
        build_clinical_text_pack(out_file, notes.patients, quality=codec.params["quality"])
    else:
        pack_like_adapters(out_file, notes.patients, codec)
    pack_s = time.perf_counter() - t0
    stored = os.path.getsize(out_file)
    os.remove(out_file)
    return {
        "docs": notes.docs, "records": len(notes.patients), "note_bytes": notes.note_bytes,
        "stored": stored, "read": notes.read_s, "decode+group": notes.decode_s, "pack": pack_s,
    }  # fmt: skip


# --------------------------------------------------------------------------------------
# Ours: catalog.build end to end
# --------------------------------------------------------------------------------------


PHASES = ("survey+catalog plan", "scan tasks", "plan", "pack tasks+merge", "commit")


def ours_split(marks: common.Marks, total: float) -> dict[str, float]:
    """Phases of one catalog.build from its progress messages."""
    sources = marks.at(r"\d+ sources: ")
    scanned = marks.at(r"scanned ")
    packing = marks.at(r"packing ")
    built = marks.at(r"run \S+: ")
    return {
        "survey+catalog plan": sources,
        "scan tasks": scanned - sources,
        "plan": packing - scanned,
        "pack tasks+merge": built - packing,
        "commit": total - built,
    }


def ours(
    spark: Any, root: str, out: str, codec: RecordCodec, executor: str, **options: Any
) -> tuple[dict[str, Any], catalog.CatalogBuildResult]:
    """One ``catalog.build`` of the corpus; ``options`` are further build options."""
    marks = common.Marks()
    r = catalog.build(spark, [root], out, kind="text", executor=executor,  # type: ignore[arg-type]
                      dataset="bench", codec=codec, progress=marks, **options)  # fmt: skip
    total = time.perf_counter() - marks.t0
    br = r.build_result
    assert br is not None
    stats = {
        "docs": sum(t.packed for t in br.sources.values()), "records": r.records,
        "errors": r.errors, "stored": br.stored_bytes, "scan_tasks": len(br.scan_files),
        "pack_tasks": len(br.task_files), **ours_split(marks, total),
    }  # fmt: skip
    return stats, r


def verify_packs(out: str, result: catalog.CatalogBuildResult, notes: Notes) -> str:
    """Every patient's documents in our packs == the baseline's (through ClinicalTextReader)."""
    expected = {p.patient_id: p for p in notes.patients}
    seen = 0
    cat = catalog.open(out)
    for path in cat.packs().column("path").to_pylist():
        reader = ClinicalTextReader(cat.pack_path(path))
        try:
            for row in range(reader.record_count):
                got = reader.read_patient_at(row)
                want = expected.get(got.patient_id)
                if want is None or (got.institution, got.docs) != (want.institution, want.docs):
                    raise SystemExit(
                        f"MISMATCH: patient {got.patient_id} in {path} row {row} differs from "
                        "the baseline's documents"
                    )
                seen += 1
        finally:
            reader.close()
    if seen != len(expected):
        raise SystemExit(f"MISMATCH: {seen} patients in our packs, baseline has {len(expected)}")
    ndocs = catalog.sql(out, "SELECT count(*) AS n FROM documents WHERE NOT retired")
    n = ndocs.column("n")[0].as_py()
    if n != notes.docs:
        raise SystemExit(f"MISMATCH: documents table has {n} rows, baseline {notes.docs} notes")
    return f"verified: {seen:,} patients / {n:,} documents identical to the baseline's"


# --------------------------------------------------------------------------------------
# Profile: the text build in one process under cProfile
# --------------------------------------------------------------------------------------


def _group(filename: str, func: str) -> str:
    """Component of a profiled function, for the own-time breakdown."""
    if filename == "~":
        for key, label in (
            ("NativeByteCodec", "record codec encode/decode (native)"),
            ("decompress", "zip inflate (zlib, C)"),
            ("'decode' of 'bytes'", "bytes.decode (UTF-8/GB18030/UTF-16, C)"),
            ("'encode' of 'str'", "str.encode (C)"),
            ("json", "json (C)"),
            ("_core", "iatro native container"),
            ("posix", "os calls (stat, open, listdir)"),
            ("'read' of", "file read (C)"),
            ("'write' of", "file write (C)"),
            ("pyarrow", "pyarrow (C)"),
            ("deltalake", "delta-rs (native)"),
        ):
            if key in func:
                return label
        return "other C builtins"
    for key, label in (
        ("zipfile", "zipfile (Python)"),
        ("iac_spark/text/", "iac_spark text (decode, path fields, parser)"),
        ("iac_spark/inputs", "iac_spark inputs (discover, survey, scan, archives)"),
        ("iac_spark/packing/text", "iac_spark packing.text (records)"),
        ("iac_spark/packing", "iac_spark packing (plan, task, shard, merge)"),
        ("iac_spark/catalog", "iac_spark catalog (rows, commit)"),
        ("iatro/iac/adapters", "iatro adapters (payload encode)"),
        ("iatro", "iatro (Python)"),
        ("deltalake", "deltalake (Python)"),
        ("pyarrow", "pyarrow (Python)"),
        ("json/", "json (Python)"),
        ("encodings/", "encodings (Python codecs)"),
        ("/re/", "re (Python)"),
    ):
        if key in filename:
            return label
    return "other Python (stdlib)"


def profile_build(root: str, work: Path, codec: RecordCodec, top: int = 25) -> str:
    """catalog.build with executor="local" under one cProfile: phases + where the time goes."""
    out = str(work / "profile")
    shutil.rmtree(out, ignore_errors=True)
    prof = cProfile.Profile()
    marks = common.Marks()
    prof.enable()
    r = catalog.build(None, [root], out, kind="text", executor="local", dataset="bench",
                      codec=codec, progress=marks)  # fmt: skip
    prof.disable()
    total = time.perf_counter() - marks.t0
    shutil.rmtree(out, ignore_errors=True)
    split = ours_split(marks, total)
    st: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    own_total = sum(v[2] for v in st.values()) or 1.0
    own: dict[str, float] = {}
    for (f, _line, fn), v in st.items():
        g = _group(f, fn)
        own[g] = own.get(g, 0.0) + v[2]
    parts = [
        [g, f"{x:.2f}", f"{100 * x / own_total:.0f}%"]
        for g, x in sorted(own.items(), key=lambda kv: -kv[1])
    ]
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    text = buf.getvalue()
    body = text[text.find("   ncalls") :] if "   ncalls" in text else text
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    cum = buf.getvalue()
    cum = cum[cum.find("   ncalls") :] if "   ncalls" in cum else cum
    return (
        f"profile: catalog.build(executor='local', codec={codec_label(codec.name, codec.params)}) "
        f"in ONE process under cProfile ({r.records} records; profiled total {total:.2f} s)\n"
        + common.table(["phase", "seconds"], [[k, f"{v:.2f}"] for k, v in split.items()])
        + "\n\nown time by component:\n"
        + common.table(["component", "seconds", "share"], parts)
        + f"\n\ntop {top} functions by own time:\n{body.rstrip()}"
        + f"\n\ntop {top} functions by cumulative time:\n{cum.rstrip()}"
    )


# --------------------------------------------------------------------------------------
# Part 1: the build
# --------------------------------------------------------------------------------------


def paired(t: dict[str, common.Timing], base: str, ours_name: str) -> float:
    """Median over rounds of base / ours, each round's two runs taken back to back."""
    return statistics.median(
        b / o for b, o in zip(t[base].seconds, t[ours_name].seconds, strict=True)
    )


def cpu_of(tm: common.Timing) -> float:
    """Median CPU seconds of a timing (nan where ``common`` does not record them)."""
    cpu = getattr(tm, "cpu", None)
    return statistics.median(cpu) if cpu else float("nan")


def part_build(args: Any, corpus: TextCorpus, notes: Notes, runs: int) -> bool:
    """Part 1; returns True when every target is met."""
    root = str(corpus.root)
    work = (args.out / "text-work").resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    codec = parse_codec(args.codec)
    lower = RecordCodec.create("brotli", quality=args.baseline_quality)
    top = RecordCodec.create("brotli", quality=11)
    label = codec_label(codec.name, codec.params)
    low = f"brotli-{args.baseline_quality}"
    spark = common.spark_session("local[2]")
    counter = iter(range(1_000_000))

    def run_ours(c: RecordCodec, executor: str, **options: Any) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            out = str(work / f"ours-{next(counter)}")
            stats, _ = ours(spark, root, out, c, executor, **options)
            shutil.rmtree(out, ignore_errors=True)
            return stats

        return run

    def run_base(c: RecordCodec) -> Callable[[], dict[str, Any]]:
        return lambda: baseline(root, str(work / f"baseline-{next(counter)}.iac"), c)

    print("warm-up (untimed): page cache, JVM and workers, one full build per executor", flush=True)
    common.warm_files(p for p in corpus.root.rglob("*") if p.is_file())
    for ex in ("spark", "local"):
        out = str(work / f"warm-{ex}")
        _, r = ours(spark, root, out, codec, ex)
        print(f"  {ex}: {verify_packs(out, r, notes)}", flush=True)
        shutil.rmtree(out, ignore_errors=True)

    names = {
        "ours": f"ours: catalog.build spark local[2], {label}",
        "b11": "baseline: 1 process, adapters' brotli-11",
        "blow": f"baseline: 1 process, adapters' {low}",
        "bsame": f"(ref) baseline, 1 process, {label}",
        "ours_low": f"(ref) ours spark, {low}",
        "ours11": "(ref) ours spark, brotli-11",
        "tasks2": f"(ref) ours spark, {label}, 2 scan tasks",
        "local": f"(ref) ours executor=local (1 process), {label}",
    }
    fns: dict[str, Callable[[], dict[str, Any]]] = {
        "ours": run_ours(codec, "spark"),
        "b11": run_base(top),
        "blow": run_base(lower),
        "bsame": run_base(codec),
        "ours_low": run_ours(lower, "spark"),
        "ours11": run_ours(top, "spark"),
        # the scan-task count a text-sized member weight would give (see the README)
        "tasks2": run_ours(codec, "spark", max_partition_bytes=SCAN_PARTITION_BYTES_2),
        "local": run_ours(codec, "local"),
    }
    keys = [k for k in names if k != "ours11" or args.ours_brotli11]
    if low == label:  # the lower-quality baseline already uses ours' codec
        keys = [k for k in keys if k not in ("bsame", "ours_low")]
    print("timing:", flush=True)
    t = common.interleaved([(names[k], fns[k]) for k in keys], runs)
    shutil.rmtree(work, ignore_errors=True)
    spark.stop()

    common.header("bench/text.py part 1: clinical text build, end to end", None, runs)
    gen = (
        "reused from cache"
        if corpus.generated_seconds is None
        else f"generated in {corpus.generated_seconds:.0f} s"
    )
    print(f"corpus: {corpus.describe()} ({gen})")
    mb = corpus.note_bytes / common.MB
    rows = []
    for k in keys:
        tm = t[names[k]]
        e = tm.extra[-1]
        rows.append(
            [names[k], f"{tm.median:.2f}", tm.spread(), f"{cpu_of(tm):.2f}",
             f"{corpus.notes / tm.median:,.0f}", f"{mb / tm.median:,.2f}", f"{e['docs']:,}",
             f"{e['records']:,}", f"{e['stored'] / common.MB:,.1f}"]
        )  # fmt: skip
    print()
    print(common.table(["variant", "median s", "spread s", "CPU s", "docs/s", "MB/s", "docs",
                        "records", "stored MB"], rows))  # fmt: skip
    print("(CPU s: median CPU seconds of this process and its descendants, the Spark JVM and "
          "Python workers included: what a run cost, whatever the other sessions took)")  # fmt: skip
    print("(MB/s: MB of note bytes as stored in their encodings, "
          f"{mb:,.1f} MB for both sides)")  # fmt: skip
    for k in keys:
        bad = [e for e in t[names[k]].extra if e["docs"] != corpus.notes]
        if bad:
            print(
                f"WARNING: {names[k]} packed {bad[0]['docs']} documents, corpus has {corpus.notes}"
            )
    print()
    print("split of ours (median over runs, from the build's progress messages):")
    ours_keys = [k for k in ("ours", "tasks2", "ours_low", "ours11", "local") if k in keys]
    split = [
        [ph, *(f"{statistics.median(e[ph] for e in t[names[k]].extra):.2f}" for k in ours_keys)]
        for ph in PHASES
    ]
    split.append(["total", *(f"{t[names[k]].median:.2f}" for k in ours_keys)])
    split.append(["scan tasks / pack tasks",
                  *(f"{t[names[k]].extra[-1]['scan_tasks']} / {t[names[k]].extra[-1]['pack_tasks']}"
                    for k in ours_keys)])  # fmt: skip
    short = {"ours": f"spark {label}", "tasks2": f"spark {label} 2 scan",
             "ours_low": f"spark {low}", "ours11": "spark brotli-11", "local": f"local {label}"}  # fmt: skip
    print(common.table(["phase (s)", *(short[k] for k in ours_keys)], split))
    base_keys = [k for k in ("b11", "blow", "bsame") if k in keys]
    print()
    print("split of the baselines (median over runs):")
    bsplit = [
        [ph, *(f"{statistics.median(e[ph] for e in t[names[k]].extra):.2f}" for k in base_keys)]
        for ph in ("read", "decode+group", "pack")
    ]
    bsplit.append(["total", *(f"{t[names[k]].median:.2f}" for k in base_keys)])
    print(common.table(["phase (s)", *(names[k].rsplit(" ", 1)[-1] for k in base_keys)], bsplit))
    print()
    for k, what in (("ours", "ours"), ("b11", "baseline brotli-11"), ("blow", f"baseline {low}")):
        tm = t[names[k]]
        print(common.figure(f"{what} docs/s (absolute)", corpus.notes / tm.median, " docs/s",
                            f"({mb / tm.median:,.2f} MB/s)"))  # fmt: skip
    print("ratios (ratio of the medians; in brackets the median of the per-round ratios):")
    ok = True
    checks = [
        ("ours", "b11", f"ours {label} / baseline brotli-11 (issue)", True),
        ("ours", "blow", f"ours {label} / baseline {low}", True),
        ("ours", "bsame", f"ours {label} / baseline {label} (same codec)", True),
        ("ours_low", "blow", f"(ref) ours {low} / baseline {low} (same codec)", False),
        ("ours11", "b11", "(ref) ours brotli-11 / baseline brotli-11", False),
        ("tasks2", "bsame" if "bsame" in keys else "blow", f"(ref) ours 2 scan tasks / baseline {label}", False),
        ("local", "bsame" if "bsame" in keys else "blow", f"(ref) ours 1 process / baseline {label}", False),
    ]  # fmt: skip
    for o, b, text, target in checks:
        if o not in keys or b not in keys:
            continue
        ratio = t[names[b]].median / t[names[o]].median
        line = (
            common.verdict(text, ratio, TARGET_RATIO) if target else common.figure(text, ratio, "x")
        )
        print(f"{line}  [{paired(t, names[b], names[o]):.2f}x]")
        ok = ok and (ratio >= TARGET_RATIO or not target)
    print("(1 process / same codec = 1.0: the core would cost nothing beyond the baseline)")
    if "bsame" in keys:
        print("CPU cost (CPU seconds, median; >1 = ours does more work than the baseline):")
        for k in ("ours", "tasks2", "local"):
            if k in keys:
                print(common.figure(f"CPU {short[k]} / baseline {label}",
                                    cpu_of(t[names[k]]) / cpu_of(t[names["bsame"]]), "x"))  # fmt: skip
    if args.profile or not ok:
        print()
        work.mkdir(parents=True, exist_ok=True)
        print(profile_build(root, work, codec))
        shutil.rmtree(work, ignore_errors=True)
    return ok


# --------------------------------------------------------------------------------------
# Part 2: the record codec
# --------------------------------------------------------------------------------------


@dataclass
class CodecRun:
    """One codec's measurements over a list of payloads (timings interleaved with the others)."""

    stored: int
    encode: common.Timing
    decode: common.Timing


def measure_codecs(
    payloads: list[bytes], runs: int, what: str
) -> tuple[dict[str, CodecRun], dict[str, list[bytes]]]:
    """Encode then decode ``payloads`` with every codec of :data:`CODECS`, ``runs`` times each."""
    encoded: dict[str, list[bytes]] = {}

    def enc(name: str, params: dict[str, int]) -> Callable[[], int]:
        def run() -> int:
            c = Codec.create(name, **params)
            out = [bytes(c.encode(p)) for p in payloads]
            encoded[codec_label(name, params)] = out
            return sum(map(len, out))

        return run

    def dec(name: str, params: dict[str, int]) -> Callable[[], int]:
        def run() -> int:
            c = Codec.create(name, **params)
            return sum(len(c.decode(b)) for b in encoded[codec_label(name, params)])

        return run

    print(f"timing encode ({what}):", flush=True)
    te = common.interleaved([(codec_label(c, p), enc(c, p)) for c, p in CODECS], runs)
    print(f"timing decode ({what}):", flush=True)
    td = common.interleaved([(codec_label(c, p), dec(c, p)) for c, p in CODECS], runs)
    for name, params in CODECS:  # every codec gives the payloads back
        c = Codec.create(name, **params)
        for b, p in zip(encoded[codec_label(name, params)], payloads, strict=True):
            if bytes(c.decode(b)) != p:
                raise SystemExit(f"MISMATCH: {codec_label(name, params)} round trip ({what})")
    out = {
        lab: CodecRun(te[lab].extra[-1], te[lab], td[lab])
        for lab in (codec_label(c, p) for c, p in CODECS)
    }
    return out, encoded


def pair_payloads(args: Any, n: int) -> tuple[list[bytes], int]:
    """``clinical_text_pair`` payloads of a separate pair corpus of ``n`` patients (cached)."""
    spec = dataclasses.replace(QUICK_SPEC if args.quick else FULL_SPEC, patients=n)
    corpus = get_text_corpus(spec, args.out, pairs=True)
    src = read_notes(str(corpus.root))
    comp = read_notes(str(compressed_root(corpus.root)))
    partners = {d.doc_id: d.text for p in comp.patients for d in p.docs}
    payloads = []
    paired_docs = 0
    for p in src.patients:
        docs = [
            pair_doc(d.doc_id, d.text, partners[d.doc_id], d.doc_type, encounter=d.encounter,
                     source=d.source, doc_timestamp=d.doc_timestamp)
            for d in p.docs if d.doc_id in partners
        ]  # fmt: skip
        if docs:
            payloads.append(encode_pair_patient(p.patient_id, p.institution, docs))
            paired_docs += len(docs)
    return payloads, paired_docs


def codec_rows(runs: dict[str, CodecRun], raw: int, all_raw: int) -> list[list[str]]:
    rows = []
    for lab, r in runs.items():
        ratio = raw / r.stored
        enc = raw / common.MB / r.encode.median
        rows.append(
            [lab, f"{r.stored / common.MB:.2f}", f"{ratio:.2f}",
             f"{all_raw / ratio / common.MB:,.1f}", f"{enc:,.2f}",
             f"{all_raw / common.MB / enc:,.1f}", f"{raw / common.MB / r.decode.median:,.0f}"]
        )  # fmt: skip
    return rows


CODEC_HEADERS = ["codec", "stored MB", "ratio", "full corpus MB", "encode MB/s",
                 "encode s full", "decode MB/s"]  # fmt: skip


def part_codec(args: Any, corpus: TextCorpus, notes: Notes, runs: int) -> None:
    n = min(args.codec_patients or (100 if args.quick else 500), len(notes.patients))
    sample = random.Random(args.seed).sample(notes.patients, n)
    payloads = [encode_text_patient(p.patient_id, p.institution, p.docs) for p in sample]
    raw = sum(map(len, payloads))
    all_raw = sum(len(encode_text_patient(p.patient_id, p.institution, p.docs))
                  for p in notes.patients)  # fmt: skip
    print(f"codec: {n} patients sampled (seed {args.seed}), {raw / common.MB:.1f} MB of record "
          f"payloads (all {len(notes.patients):,} patients: {all_raw / common.MB:.1f} MB)",
          flush=True)  # fmt: skip
    text_runs, encoded = measure_codecs(payloads, runs, "clinical_text")

    # one clinical_text pack per codec, from the encoded payloads (no second encode)
    work = (args.out / "text-codec").resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    readers: dict[str, ClinicalTextReader] = {}
    slides, index = text_tables(sample)
    for name, params in CODECS:
        lab = codec_label(name, params)
        path = str(work / f"{lab}.iac")
        VariableRecordPack.build_from_payloads(
            path,
            payload_type="clinical_text",
            slide_table=slides,
            index_table=index,
            payloads=encoded[lab],
            codec_name=name,
            codec_params=dict(Codec.create(name, **params).parameters()),
            extra_header={"text_schema_version": 1},
        )
        common.warm_files([path])
        readers[lab] = ClinicalTextReader(path)
        for p in sample[:20]:
            if readers[lab].read_patient(p.patient_id).docs != p.docs:
                raise SystemExit(f"MISMATCH: {lab} pack does not read back patient {p.patient_id}")
    lat: dict[str, list[float]] = defaultdict(list)
    order = [sample[i].patient_id for i in random.Random(args.seed + 1).sample(range(n), n)]

    def reads(lab: str) -> Callable[[], int]:
        def run() -> int:
            reader = readers[lab]
            total = 0
            for pid in order:
                t0 = time.perf_counter()
                p = reader.read_patient(pid)
                lat[lab].append(time.perf_counter() - t0)
                total += len(p.docs)
            return total

        return run

    print("timing random single-record reads (ClinicalTextReader.read_patient):", flush=True)
    tr = common.interleaved([(lab, reads(lab)) for lab in text_runs], runs)
    for reader in readers.values():
        reader.close()
    shutil.rmtree(work, ignore_errors=True)

    pairs, pair_docs = pair_payloads(args, n)
    pair_raw = sum(map(len, pairs))
    pair_runs, _ = measure_codecs(pairs, runs, "clinical_text_pair")

    common.header("bench/text.py part 2: clinical_text / clinical_text_pair record codec", None, runs)  # fmt: skip
    print(f"corpus: {corpus.describe()}")
    print(f"clinical_text records: {n} patients sampled with seed {args.seed} "
          f"({n / len(notes.patients):.0%} of {len(notes.patients):,}), one record per patient = "
          f"encode_text_patient payload, {raw / common.MB:.2f} MB raw "
          f"({raw / n / 1024:.1f} KiB/record); codecs through iatro.iac.Codec.create, one thread, "
          "one record per call")  # fmt: skip
    print()
    rows = codec_rows(text_runs, raw, all_raw)
    for row, lab in zip(rows, text_runs, strict=True):
        ls = sorted(lat[lab])
        row += [f"{statistics.median(ls) * 1e6:,.0f}", f"{ls[int(0.95 * (len(ls) - 1))] * 1e6:,.0f}",
                f"{n / tr[lab].median:,.0f}"]  # fmt: skip
    print(common.table([*CODEC_HEADERS, "read p50 us", "read p95 us", "reads/s"], rows))
    print(f"(full corpus MB / encode s full: the sample's ratio and encode rate applied to all "
          f"{all_raw / common.MB:.1f} MB of payloads of the corpus, one core. Reads: each sampled "
          "patient once per run in random order, read_patient = pread + decode + manifest JSON + "
          "UTF-8, one pack per codec kept open, warm cache; p50/p95 over all runs)")  # fmt: skip
    print()
    print(f"clinical_text_pair records: a pair corpus of {n} patients (same spec, with its "
          f"teacher-compressed companion), {len(pairs)} records / {pair_docs:,} paired documents, "
          f"encode_pair_patient payloads, {pair_raw / common.MB:.2f} MB raw "
          f"({pair_raw / max(len(pairs), 1) / 1024:.1f} KiB/record)")  # fmt: skip
    print()
    prows = codec_rows(pair_runs, pair_raw, pair_raw)
    print(common.table(["codec", "stored MB", "ratio", "encode MB/s", "decode MB/s"],
                       [[r[0], r[1], r[2], r[4], r[6]] for r in prows]))  # fmt: skip


# --------------------------------------------------------------------------------------


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--part", choices=("all", "build", "codec"), default="all")
    p.add_argument("--codec", default="zstd-3",
                   help="ours' record codec, zstd-N or brotli-N (default %(default)s)")  # fmt: skip
    p.add_argument("--baseline-quality", type=int, default=5,
                   help="brotli quality of the lower-quality baseline (default %(default)s)")  # fmt: skip
    p.add_argument("--codec-patients", type=int, default=None,
                   help="patients sampled for part 2 (default 500, --quick 100)")  # fmt: skip
    p.add_argument("--ours-brotli11", action="store_true",
                   help="also time ours with brotli-11 (same codec as the issue's baseline; slow)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true",
                   help="always print the 1-process build profile (default: when a target is missed)")  # fmt: skip
    args = p.parse_args()
    runs = common.runs_of(args)
    spec = QUICK_SPEC if args.quick else FULL_SPEC
    corpus = get_text_corpus(spec, args.out)
    print(f"corpus: {corpus.describe()}", flush=True)
    print(f"iac_spark imported from {Path(catalog.__file__).parent.parent}", flush=True)
    common.warm_files(f for f in corpus.root.rglob("*") if f.is_file())
    notes = read_notes(str(corpus.root))  # the baseline's documents: verification + part 2
    if notes.docs != corpus.notes or notes.note_bytes != corpus.note_bytes:
        raise SystemExit(f"corpus {corpus.root}: read {notes.docs} notes / {notes.note_bytes} "
                         f"bytes, expected {corpus.notes} / {corpus.note_bytes}")  # fmt: skip
    if args.part in ("all", "build"):
        part_build(args, corpus, notes, runs)
    if args.part in ("all", "codec"):
        part_codec(args, corpus, notes, runs)
    common.footer(args.quick)


if __name__ == "__main__":
    main()
