"""Driver side: merge the segments of successful task attempts into published packs.

Only the segments named in successful commit messages are considered (never a
directory listing, which would pick up failed attempts). Segments are grouped
into *units* (a chain of segments linked by ``continues`` stays together unless it
alone exceeds the pack target). A unit of at least half the pack target is
published by rename, no bytes copied; smaller units are concatenated, in order,
into packs of about ``pack_target_bytes``: data segments copied back to back,
offsets rebased and the slide (series) table rebuilt for the merged index.
Every pack is written under a temporary name and renamed into place. The slide table of a
concatenated pack is derived again by its :class:`~iac_spark.packing.layout.Layout`.

Every published pack gets a whole-file CRC-32C (:func:`~iac_spark.packing.shard.file_crc32c`,
carried by :class:`PackInfo` into the catalog's ``packs.file_crc32c``): a segment published by
rename brings the checksum its task computed, a concatenated pack is checksummed here. Reading
packs back safely is :mod:`iac_spark.packing.reading`.

Example:
    >>> from iac_spark.packing.layout import DICOM_P10
    >>> merge_segments([], "/tmp/out", "ds", "run1", layout=DICOM_P10)
    []
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
from iatro.iac import PackReader, build_pack_data_segment_from_file

from .layout import CONTAINER_COLUMNS, LAYOUTS, Layout, pack_path, packs_dir
from .shard import SegmentInfo, file_crc32c

__all__ = ["DEFAULT_PACK_TARGET_BYTES", "PackInfo", "merge_segments", "remove_tree"]

DEFAULT_PACK_TARGET_BYTES = 256 * 1024**2
_BIG_FRACTION = 0.5


@dataclass(frozen=True)
class PackInfo:
    """A published pack and its index rows (what the catalog records)."""

    pack_id: str
    dataset: str
    path: str
    num_records: int
    num_patients: int
    num_series: int
    data_bytes: int
    file_bytes: int
    published_by: str  # "rename" or "concat"
    index: pa.Table
    file_crc32c: int | None = None  # CRC-32C of the whole file (:func:`file_crc32c`)


def _units(segments: list[SegmentInfo], pack_target: int) -> list[list[SegmentInfo]]:
    ordered = sorted(segments, key=lambda s: (s.task_id, s.seq))
    chains: list[list[SegmentInfo]] = []
    for s in ordered:
        prev = chains[-1][-1] if chains else None
        if prev is not None and prev.task_id == s.task_id and prev.continues:
            chains[-1].append(s)
        else:
            chains.append([s])
    units: list[list[SegmentInfo]] = []
    for chain in chains:
        if len(chain) > 1 and sum(s.data_bytes for s in chain) > pack_target:
            units.extend(
                [s] for s in chain
            )  # one patient alone exceeds the target: it may span packs
        else:
            units.append(chain)
    # tasks hold disjoint patients, so ordering units by first patient keeps every pack sorted
    units.sort(key=lambda u: (u[0].first_patient, u[0].task_id, u[0].seq))
    return units


def _bins(units: list[list[SegmentInfo]], pack_target: int) -> list[list[SegmentInfo]]:
    bins: list[list[SegmentInfo]] = []
    small: list[SegmentInfo] = []
    acc = 0
    for unit in units:
        size = sum(s.data_bytes for s in unit)
        if size >= pack_target * _BIG_FRACTION:
            bins.append(list(unit))
            continue
        if small and acc + size > pack_target:
            bins.append(small)
            small, acc = [], 0
        small.extend(unit)
        acc += size
    if small:
        bins.append(small)
    return bins


def _info(
    pack_id: str, dataset: str, path: str, how: str, layout: Layout, index_path: str | None = None,
    crc32c: int | None = None,
) -> PackInfo:  # fmt: skip
    reader = PackReader(path)
    try:
        header, index, slides = dict(reader.header), reader.index_table, reader.slide_table
    finally:
        reader.close()
    if index_path is not None:  # the adapter owns the pack's tables; ours is beside it
        index = pa.ipc.open_file(pa.memory_map(index_path)).read_all()
    if layout.has_slide_idx:
        num_series = slides.num_rows
    elif "series_instance_uid" in index.column_names:
        num_series = len(set(index.column("series_instance_uid").to_pylist()))
    else:
        num_series = 0
    return PackInfo(
        pack_id=pack_id, dataset=dataset, path=path, num_records=index.num_rows,
        num_patients=len(set(index.column("patient_id").to_pylist())),
        num_series=num_series,
        data_bytes=int(header["data_length"]), file_bytes=os.path.getsize(path),
        published_by=how, index=index,
        file_crc32c=file_crc32c(path) if crc32c is None else crc32c,
    )  # fmt: skip


def _copy_range(src_path: str, offset: int, length: int, out: BinaryIO) -> None:
    """Append ``length`` bytes at ``offset`` of ``src_path`` to ``out`` (in-kernel where possible)."""
    out.flush()
    with open(src_path, "rb") as src:
        done = 0
        if hasattr(os, "copy_file_range"):
            try:
                while done < length:
                    n = os.copy_file_range(src.fileno(), out.fileno(), length - done, offset + done)
                    if n == 0:
                        break
                    done += n
            except OSError:
                out.seek(0, os.SEEK_END)  # fall back to a plain copy of what is left
        src.seek(offset + done)
        while done < length:
            chunk = src.read(min(length - done, 8 * 1024**2))
            if not chunk:
                raise OSError(f"{src_path}: data segment shorter than its header says")
            out.write(chunk)
            done += len(chunk)
    out.seek(0, os.SEEK_END)  # resync the buffered writer with the descriptor's offset


def _concat(segs: list[SegmentInfo], final: str, tmp_dir: str, layout: Layout) -> None:
    tmp_data = os.path.join(tmp_dir, os.path.basename(final) + ".data")
    tables = []
    header: dict[str, object] = {}
    base = 0
    with open(tmp_data, "wb") as out:
        for seg in segs:
            reader = PackReader(seg.path)
            try:
                h, index = dict(reader.header), reader.index_table
            finally:
                reader.close()
            if not header:
                keys = ("payload_type", "codec", "codec_params", *layout.extra_header)
                header = {k: h[k] for k in keys if k in h}
            _copy_range(seg.path, int(h["data_offset"]), int(h["data_length"]), out)
            offsets = pc.add(index.column("offset"), pa.scalar(base, pa.uint64()))
            tables.append(
                index.set_column(index.schema.get_field_index("offset"), "offset", offsets)
            )
            base += int(h["data_length"])
    combined = pa.concat_tables(tables)
    container = combined.select(CONTAINER_COLUMNS.names)
    caller = combined.select(layout.caller_schema.names)
    slides, index = layout.tables(caller)
    for f in CONTAINER_COLUMNS:
        index = index.append_column(f.name, container.column(f.name))
    combined = index
    tmp_pack = final + ".tmp"
    build_pack_data_segment_from_file(
        tmp_pack, header, slides, combined, tmp_data, data_length=base, overwrite=True
    )
    os.remove(tmp_data)
    os.replace(tmp_pack, final)


def merge_segments(
    segments: list[SegmentInfo],
    out: str,
    dataset: str,
    run_id: str,
    *,
    layout: Layout,
    pack_target_bytes: int = DEFAULT_PACK_TARGET_BYTES,
    published: list[str] | None = None,
) -> list[PackInfo]:
    """Publish ``segments`` as packs ``OUT/packs/<dataset>/<run_id>-NNNN.iac``.

    Paths are appended to ``published`` as they appear, so a caller can remove them
    if a later step fails.
    """
    if not segments:
        return []
    target_dir = packs_dir(out, dataset)
    os.makedirs(target_dir, exist_ok=True)
    tmp_dir = os.path.dirname(segments[0].path)
    packs: list[PackInfo] = []
    groups: dict[str, list[SegmentInfo]] = {}
    for seg in segments:
        groups.setdefault(seg.layout or layout.name, []).append(seg)
    for name in sorted(groups, key=lambda g: g != layout.name):  # the build's layout first
        this = LAYOUTS[name]
        segs_of = groups[name]
        bins = (
            _bins(_units(segs_of, pack_target_bytes), pack_target_bytes)
            if this.mergeable
            else [[s] for s in sorted(segs_of, key=lambda s: (s.first_patient, s.task_id, s.seq))]
        )
        for segs in bins:
            pack_id = f"{run_id}-{len(packs):04d}"
            final = pack_path(out, dataset, pack_id)
            crc: int | None = None  # a renamed segment brings the checksum its task computed
            if len(segs) == 1:
                crc = segs[0].file_crc32c
                os.replace(segs[0].path, final)
                how = "rename"
            else:
                _concat(segs, final, tmp_dir, this)
                how = "concat"
            if published is not None:
                published.append(final)
            packs.append(_info(pack_id, dataset, final, how, this, segs[0].index_path, crc))
    return packs


def remove_tree(path: str) -> None:
    """Remove a staging directory (missing is fine)."""
    shutil.rmtree(path, ignore_errors=True)
