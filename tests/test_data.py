"""``iac_spark.data``: RecordDataset over catalog queries (issue 9).

Catalogs are built with the local executor (no JVM). The truth for every payload is the
source member read from its zip: its bytes, and pydicom's ``dcmread(...).pixel_array``.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import pickle
import re
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

import iac_spark.catalog as cat
from iac_spark.data import (
    CohortQueryError,
    RecordDataset,
    SampleDecodeError,
    SeriesShapeError,
    UnsupportedLayoutError,
)
from iac_spark.data import layouts as layouts_mod
from iac_spark.data.pixels import native_pixel_array
from iac_spark.errors import OptionError
from iac_spark.testing.corpus import CorpusSpec, generate_corpus

REPO = Path(__file__).resolve().parent.parent


def source_bytes(source_path: str, member: str | None) -> bytes:
    if member is None:
        return Path(source_path).read_bytes()
    with zipfile.ZipFile(source_path) as zf:
        return zf.read(member)


def pydicom_pixels(data: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data), force=True).pixel_array


def rewrite_member(path: Path, member: str, data: bytes) -> None:
    with zipfile.ZipFile(path) as zf:
        members = [(i.filename, zf.read(i)) for i in zf.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, old in members:
            zf.writestr(name, data if name == member else old)


def edited(data: bytes, **attrs: Any) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    for name, value in attrs.items():
        if value is None:
            delattr(ds, name)
        else:
            setattr(ds, name, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """2 patients, CT 5 slices (24x24) + MR 3 slices (16x16), built twice: the second build
    re-ingests PAT-0000.zip whose first CT slice got new pixels (the old record is retired)."""
    root = tmp_path_factory.mktemp("data")
    src, out = root / "src", root / "out"
    generate_corpus(src, CorpusSpec(patients=2, ct_slices=5, mr_slices=3, ct_size=24, mr_size=16, seed=3))  # fmt: skip
    first = cat.build(None, [str(src)], str(out), executor="local")
    zpath = src / "PAT-0000.zip"
    with zipfile.ZipFile(zpath) as zf:
        member = sorted(n for n in zf.namelist() if "AX_CHEST" in n)[0]
        old = zf.read(member)
    ds = pydicom.dcmread(io.BytesIO(old))
    arr = ds.pixel_array.copy()
    arr[0, 0] = (int(arr[0, 0]) + 7) % 4096
    ds.PixelData = arr.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    rewrite_member(zpath, member, buf.getvalue())
    second = cat.build(None, [str(src)], str(out), executor="local")
    assert second.retired_records == 8
    return {
        "src": src, "out": str(out), "first": first.catalog_version,
        "changed": (str(zpath), member, old, buf.getvalue(), str(ds.SOPInstanceUID)),
    }  # fmt: skip


@pytest.fixture(scope="module")
def live(built: dict[str, Any]) -> list[dict[str, Any]]:
    return cat.sql(
        built["out"], "SELECT * FROM records WHERE NOT retired ORDER BY pack_id, row"
    ).to_pylist()


# --------------------------------------------------------------------------------------
# selection and items
# --------------------------------------------------------------------------------------


def test_default_dataset_is_every_live_record_with_its_source_bytes(
    built: dict[str, Any], live: list[dict[str, Any]]
) -> None:
    ds = RecordDataset(built["out"])
    assert len(ds) == len(live) == 16
    assert ds.columns == [
        "pack_id", "row", "sop_instance_uid", "series_instance_uid", "study_instance_uid",
        "patient_id", "modality", "instance_number",
    ]  # fmt: skip
    for i, rec in enumerate(live):
        item = ds[i]
        assert (item["pack_id"], item["row"]) == (rec["pack_id"], rec["row"]) == ds.location(i)
        assert item["bytes"] == source_bytes(rec["source_path"], rec["source_member"])
    assert ds[-1]["row"] == live[-1]["row"]
    assert [x["row"] for x in ds[np.array([2, 0])]] == [ds[2]["row"], ds[0]["row"]]
    assert ds[np.int64(1)]["row"] == ds[1]["row"]
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(TypeError):
        ds["0"]  # type: ignore[call-overload]


def test_pixels_and_datasets_equal_pydicoms(
    built: dict[str, Any], live: list[dict[str, Any]]
) -> None:
    pixels = RecordDataset(built["out"], decode="pixels")
    datasets = RecordDataset(built["out"], decode="dataset")
    batch = pixels[list(range(len(pixels)))]  # the batched path (one read_many per pack)
    for i, rec in enumerate(live):
        want = pydicom_pixels(source_bytes(rec["source_path"], rec["source_member"]))
        got = pixels[i]["pixels"]
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
        assert got.flags.writeable
        assert np.array_equal(batch[i]["pixels"], want)
        assert datasets[i]["dataset"].SOPInstanceUID == rec["sop_instance_uid"]
        assert np.array_equal(datasets[i]["dataset"].pixel_array, want)


def test_query_by_sop_instance_uid_and_its_order(
    built: dict[str, Any], live: list[dict[str, Any]]
) -> None:
    q = (
        "SELECT sop_instance_uid, instance_number FROM records "
        "WHERE NOT retired AND modality = 'MR' ORDER BY instance_number DESC, sop_instance_uid"
    )
    ds = RecordDataset(built["out"], q)
    mr = sorted((r for r in live if r["modality"] == "MR"),
                key=lambda r: (-r["instance_number"], r["sop_instance_uid"]))  # fmt: skip
    assert [ds[i]["sop_instance_uid"] for i in range(len(ds))] == [
        r["sop_instance_uid"] for r in mr
    ]
    assert sorted(ds[0]) == ["bytes", "instance_number", "sop_instance_uid"]
    for i, rec in enumerate(mr):
        want = source_bytes(rec["source_path"], rec["source_member"])
        assert hashlib.sha256(ds[i]["bytes"]).digest() == hashlib.sha256(want).digest()


def test_the_changed_member_reads_its_new_bytes_and_as_of_its_old(built: dict[str, Any]) -> None:
    _zip, _member, old, new, sop = built["changed"]
    q = f"SELECT sop_instance_uid FROM records WHERE NOT retired AND sop_instance_uid = '{sop}'"
    assert RecordDataset(built["out"], q)[0]["bytes"] == new
    then = RecordDataset(built["out"], q, as_of=built["first"])
    assert then.version == built["first"] and then[0]["bytes"] == old
    assert pickle.loads(pickle.dumps(then))[0]["bytes"] == old  # the copy keeps the version


def test_bad_queries_are_refused_with_what_is_wrong(built: dict[str, Any]) -> None:
    out = built["out"]
    with pytest.raises(
        CohortQueryError, match=r"pack_id and row, or sop_instance_uid.*\['modality'\]"
    ):
        RecordDataset(out, "SELECT modality FROM records")
    with pytest.raises(CohortQueryError, match="payload's item keys"):
        RecordDataset(out, "SELECT pack_id, row, modality AS pixels FROM records")
    with pytest.raises(CohortQueryError, match=r"1\.2\.3\.4 has no live record"):
        RecordDataset(out, "SELECT '1.2.3.4' AS sop_instance_uid")
    with pytest.raises(CohortQueryError, match="not in packs"):
        RecordDataset(out, "SELECT 'nope' AS pack_id, CAST(0 AS BIGINT) AS row")
    with pytest.raises(OptionError, match="decode must be one of"):
        RecordDataset(out, decode="png")  # type: ignore[arg-type]
    # a UID with two live records (conflicting copies) must be read by (pack_id, row)
    _zip, _member, _old, _new, sop = built["changed"]
    both = f"SELECT sop_instance_uid FROM records WHERE sop_instance_uid = '{sop}'"
    assert (
        len(RecordDataset(out, both.replace("SELECT sop_instance_uid", "SELECT pack_id, row"))) == 2
    )
    empty = RecordDataset(out, "SELECT pack_id, row FROM records WHERE modality = 'XX'")
    assert len(empty) == 0 and list(empty.iter_batches(4)) == []


def test_a_pack_layout_is_chosen_by_payload_type(
    built: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[int]] = []

    class Spy(layouts_mod.DicomP10Pack):
        def read_bytes(self, rows: Any) -> list[bytes]:
            calls.append(list(rows))
            return super().read_bytes(rows)

    monkeypatch.setitem(layouts_mod.LAYOUTS, "dicom_p10", Spy)
    ds = RecordDataset(built["out"])
    rows = [ds.location(0)[1], ds.location(1)[1]]
    assert ds[[0, 1]][1]["bytes"] and calls == [rows]  # one batch read for both
    assert ds[1]["bytes"] and calls == [rows, rows[1:]]
    monkeypatch.delitem(layouts_mod.LAYOUTS, "dicom_p10")
    with pytest.raises(UnsupportedLayoutError, match="payload_type 'dicom_p10'"):
        RecordDataset(built["out"], "SELECT pack_id, row FROM records")


# --------------------------------------------------------------------------------------
# undecodable samples
# --------------------------------------------------------------------------------------


def test_an_undecodable_sample_names_record_pack_row_and_plugin(
    testdata_dir: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(testdata_dir / "JPEGLSNearLossless_08.dcm", src / "jls.dcm")
    shutil.copy(testdata_dir / "CT_small.dcm", src / "ct.dcm")
    out = str(tmp_path / "out")
    cat.build(None, [str(src)], out, executor="local")
    ds = RecordDataset(
        out,
        "SELECT pack_id, row, sop_instance_uid FROM records ORDER BY source_path",
        decode="pixels",
    )
    assert ds[0]["pixels"].shape == (128, 128)  # ct.dcm
    jls = ds.location(1)
    with pytest.raises(SampleDecodeError) as err:
        ds[1]
    e = err.value
    text = str(e)
    uid = RecordDataset(out, "SELECT sop_instance_uid FROM records ORDER BY source_path")[1][
        "sop_instance_uid"
    ]
    assert uid in text and f"pack {jls[0]}, row {jls[1]}" in text
    assert "JPEG-LS" in text and "pylibjpeg" in text and e.missing_plugins
    assert (e.pack_id, e.row, e.sop_instance_uid) == (jls[0], jls[1], uid)
    assert e.transfer_syntax_uid == "1.2.840.10008.1.2.4.81"
    # the error survives the trip back from a worker process
    with pytest.raises(SampleDecodeError, match=re.escape(f"row {jls[1]}")):
        list(ds.iter_batches(1, workers=1, mp_context="fork"))
    assert RecordDataset(out, decode="bytes")[1]["bytes"]  # bytes still read


def test_native_pixels_equal_pydicom_on_pydicoms_files(testdata_dir: Path) -> None:
    handled = 0
    for path in sorted(testdata_dir.glob("*.dcm")):
        data = path.read_bytes()
        got = native_pixel_array(data)
        if got is None:
            continue
        want = pydicom_pixels(data)
        assert got.dtype == want.dtype and got.shape == want.shape, path.name
        assert np.array_equal(got, want), path.name
        handled += 1
    assert handled >= 5  # CT_small, MR_small, MR_small_implicit, ...


def test_native_pixels_correct_unused_bits_like_pydicom(testdata_dir: Path) -> None:
    """High bits above BitsStored are masked (unsigned) or sign-extended (signed), as pydicom does."""
    for signed in (0, 1):
        ds = pydicom.dcmread(testdata_dir / "MR_small.dcm")
        arr = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 37
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = signed, 12, 11
        ds.PixelData = arr.tobytes()
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        got, want = native_pixel_array(buf.getvalue()), pydicom_pixels(buf.getvalue())
        assert got is not None and got.dtype == want.dtype and np.array_equal(got, want)


# --------------------------------------------------------------------------------------
# order, resume, pickling, processes
# --------------------------------------------------------------------------------------


def ids(batches: Any) -> list[str]:
    return [item["sop_instance_uid"] for batch in batches for item in batch]


def test_order_is_deterministic_per_seed_and_epoch_and_resumes(built: dict[str, Any]) -> None:
    ds = RecordDataset(built["out"])
    everyone = sorted(ds[i]["sop_instance_uid"] for i in range(len(ds)))
    plain = ids(ds.iter_batches(5))
    assert plain == [ds[i]["sop_instance_uid"] for i in range(len(ds))]
    e0 = ids(ds.iter_batches(3, shuffle=True, seed=7, epoch=0))
    assert sorted(e0) == everyone and e0 != plain
    assert ids(ds.iter_batches(3, shuffle=True, seed=7, epoch=0)) == e0
    assert ids(ds.iter_batches(4, shuffle=True, seed=7, epoch=0)) == e0  # batch size: same order
    assert ids(ds.iter_batches(3, shuffle=True, seed=7, epoch=1)) != e0
    assert ids(ds.iter_batches(3, shuffle=True, seed=8, epoch=0)) != e0
    for start in (0, 4, 15, 16):
        assert ids(ds.iter_batches(3, shuffle=True, seed=7, start=start)) == e0[start:]
    assert [len(b) for b in ds.iter_batches(3, start=4)] == [3, 3, 3, 3]
    with pytest.raises(OptionError, match="start"):
        list(ds.iter_batches(3, start=17))
    with pytest.raises(OptionError, match="batch_size"):
        list(ds.iter_batches(0))


def test_pickled_copy_gives_the_same_items(built: dict[str, Any]) -> None:
    ds = RecordDataset(built["out"], decode="pixels")
    first = ds[3]  # opens the pack in this process
    copy = pickle.loads(pickle.dumps(ds))
    assert "_open" not in ds.__getstate__() and copy.version == ds.version
    again = copy[3]
    assert {k: v for k, v in again.items() if k != "pixels"} == {
        k: v for k, v in first.items() if k != "pixels"
    }
    assert np.array_equal(again["pixels"], first["pixels"])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_two_worker_processes_give_the_same_epoch(built: dict[str, Any], method: str) -> None:
    ds = RecordDataset(built["out"], decode="pixels")
    ds[[0, 1, 2]]  # the parent has used its packs (and the native batch decoder) before forking
    want = ids(ds.iter_batches(3, shuffle=True, seed=2))
    got = list(ds.iter_batches(3, shuffle=True, seed=2, workers=2, mp_context=method))  # type: ignore[arg-type]
    assert ids(got) == want
    assert (
        ids(ds.iter_batches(3, shuffle=True, seed=2, workers=2, start=5, mp_context=method))
        == want[5:]
    )  # type: ignore[arg-type]
    one = {x["sop_instance_uid"]: x["pixels"] for b in got for x in b}
    assert all(
        np.array_equal(one[ds[i]["sop_instance_uid"]], ds[i]["pixels"]) for i in range(len(ds))
    )


def _sample_digest(args: tuple[RecordDataset, int]) -> tuple[str, str]:
    ds, i = args
    item = ds[i]
    return item["sop_instance_uid"], hashlib.sha256(item["pixels"].tobytes()).hexdigest()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_dataset_in_a_plain_multiprocessing_pool(built: dict[str, Any], method: str) -> None:
    """The way DataLoader workers use it: each process indexes its own copy."""
    ds = RecordDataset(built["out"], decode="pixels")
    want = [_sample_digest((ds, i)) for i in range(len(ds))]
    with multiprocessing.get_context(method).Pool(2) as pool:
        got = pool.map(_sample_digest, [(ds, i) for i in range(len(ds))], chunksize=3)
    assert got == want


def our_segments() -> list[str]:
    shm = Path("/dev/shm")
    return sorted(p.name for p in shm.glob("iacd_*")) if shm.is_dir() else []


def test_closing_an_epoch_early_stops_the_workers_and_frees_shared_memory(
    built: dict[str, Any],
) -> None:
    before = our_segments()
    ds = RecordDataset(built["out"], decode="pixels")
    it = ds.iter_batches(1, workers=2, mp_context="fork")
    first = next(it)
    assert first[0]["pixels"].shape == (24, 24) or first[0]["pixels"].ndim == 2
    it.close()  # cancels what is queued, waits for what runs: no orphan processes
    assert multiprocessing.active_children() == []
    assert our_segments() == before  # segments are unlinked as soon as they are received


def test_large_pixels_come_back_through_shared_memory(tmp_path: Path) -> None:
    """512x512 slices (over the 64 KiB threshold) cross from the workers as shared memory."""
    src, out = tmp_path / "src", str(tmp_path / "out")
    generate_corpus(src, CorpusSpec(patients=1, ct_slices=3, mr_slices=0, ct_size=256, seed=2))
    cat.build(None, [str(src)], out, executor="local")
    ds = RecordDataset(out, decode="pixels")
    before = our_segments()
    got = [x for b in ds.iter_batches(2, workers=2, mp_context="fork") for x in b]
    for i, item in enumerate(got):
        assert np.array_equal(item["pixels"], ds[i]["pixels"]) and item["pixels"].flags.writeable
    if Path("/dev/shm").is_dir():
        import mmap

        assert isinstance(got[0]["pixels"].base, mmap.mmap)  # a view on the received segment
    assert our_segments() == before


def test_series_in_a_forked_worker_says_why_it_cannot(built: dict[str, Any]) -> None:
    ds = RecordDataset(built["out"])
    uid = ds[0]["series_instance_uid"]
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply(_series_or_error, (ds, uid))
    assert got.startswith("ForkedCatalogError") and "spawn" in got
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_series_or_error, (ds, uid)) == str(ds.series(uid).shape)


def _series_or_error(ds: RecordDataset, uid: str) -> str:
    from iac_spark.data import ForkedCatalogError

    try:
        return str(ds.series(uid).shape)
    except ForkedCatalogError as exc:
        return f"ForkedCatalogError: {exc}"


# --------------------------------------------------------------------------------------
# series volumes
# --------------------------------------------------------------------------------------


def test_series_stacks_pixels_along_the_slice_normal(
    built: dict[str, Any], live: list[dict[str, Any]]
) -> None:
    ds = RecordDataset(
        built["out"], "SELECT pack_id, row FROM records WHERE NOT retired AND modality = 'MR'"
    )
    ct = [r for r in live if r["modality"] == "CT" and r["patient_id"] == "PAT-0001"]
    uid = ct[0]["series_instance_uid"]
    volume = ds.series(uid)  # a CT series, outside the dataset's MR selection: from the catalog
    assert volume.shape == (5, 24, 24)
    by_z = sorted(ct, key=lambda r: r["image_position_patient"][2])  # axial: normal = +z
    assert [r["instance_number"] for r in by_z] == [5, 4, 3, 2, 1]
    for k, r in enumerate(by_z):
        assert np.array_equal(
            volume[k], pydicom_pixels(source_bytes(r["source_path"], r["source_member"]))
        )
    with pytest.raises(CohortQueryError, match="no live record"):
        ds.series("1.2.3")


def test_series_without_positions_follows_instance_numbers(tmp_path: Path) -> None:
    src, out = tmp_path / "src", str(tmp_path / "out")
    generate_corpus(src, CorpusSpec(patients=1, ct_slices=4, mr_slices=0, ct_size=16, seed=9))
    zpath = src / "PAT-0000.zip"
    with zipfile.ZipFile(zpath) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".dcm"))
        data = {n: zf.read(n) for n in names}
    # shuffle the instance numbers, drop the positions of one slice: order by InstanceNumber
    numbers = {names[0]: 3, names[1]: 1, names[2]: 4, names[3]: 2}
    for n in names:
        changes: dict[str, Any] = {"InstanceNumber": numbers[n]}
        if n == names[2]:
            changes["ImagePositionPatient"] = None
        rewrite_member(zpath, n, edited(data[n], **changes))
    cat.build(None, [str(src)], out, executor="local")
    ds = RecordDataset(out, decode="pixels")
    volume = ds.series(ds[0]["series_instance_uid"])
    want = [pydicom_pixels(data[n]) for n in sorted(names, key=numbers.__getitem__)]
    assert all(np.array_equal(volume[k], w) for k, w in enumerate(want))


def test_series_of_mixed_shapes_is_refused(tmp_path: Path) -> None:
    src, out = tmp_path / "src", str(tmp_path / "out")
    generate_corpus(src, CorpusSpec(patients=1, ct_slices=2, mr_slices=0, ct_size=16, seed=4))
    zpath = src / "PAT-0000.zip"
    with zipfile.ZipFile(zpath) as zf:
        name = sorted(n for n in zf.namelist() if n.endswith(".dcm"))[0]
        ds = pydicom.dcmread(io.BytesIO(zf.read(name)))
    ds.Rows, ds.Columns, ds.PixelData = 8, 8, np.zeros((8, 8), np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    rewrite_member(zpath, name, buf.getvalue())
    cat.build(None, [str(src)], out, executor="local")
    with pytest.raises(SeriesShapeError, match=r"\(8, 8\), \(16, 16\)"):
        RecordDataset(out).series(str(ds.SeriesInstanceUID))


# --------------------------------------------------------------------------------------
# torch
# --------------------------------------------------------------------------------------


def test_torch_dataloader_with_two_workers(built: dict[str, Any]) -> None:
    torch_data = pytest.importorskip(
        "torch.utils.data", reason="torch is not installed: the DataLoader run needs it"
    )
    ds = RecordDataset(
        built["out"],
        "SELECT pack_id, row, sop_instance_uid FROM records WHERE NOT retired AND modality = 'CT' "
        "ORDER BY pack_id, row",
        decode="pixels",
    )
    loader = torch_data.DataLoader(ds, batch_size=3, shuffle=True, num_workers=2)
    seen = []
    for batch in loader:
        assert tuple(batch["pixels"].shape[1:]) == (24, 24)
        seen += list(batch["sop_instance_uid"])
    assert sorted(seen) == sorted(ds[i]["sop_instance_uid"] for i in range(len(ds)))
    spawned = torch_data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=list,
                                    multiprocessing_context="spawn")  # fmt: skip
    assert sorted(x["sop_instance_uid"] for b in spawned for x in b) == sorted(seen)


# --------------------------------------------------------------------------------------
# docs/cohorts.md: its code blocks run, in order, on a small catalog
# --------------------------------------------------------------------------------------


def doc_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_cohorts_doc_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the demo corpus of `make demo` and the doc (same patients, slices and seed), smaller images
    spec = CorpusSpec(patients=4, ct_slices=30, mr_slices=20, ct_size=32, mr_size=16, seed=1)
    generate_corpus(tmp_path / "demo_data", spec)
    cat.build(None, [str(tmp_path / "demo_data")], str(tmp_path / "demo_out"), executor="local")
    monkeypatch.chdir(tmp_path)
    blocks = doc_blocks(REPO / "docs" / "cohorts.md")
    assert len(blocks) >= 4
    try:
        import torch  # noqa: F401

        has_torch = True
    except ImportError:
        has_torch = False
    namespace: dict[str, Any] = {"__name__": "__main__"}
    ran = 0
    for block in blocks:
        if "import torch" in block and not has_torch:
            continue
        exec(compile(block, "docs/cohorts.md", "exec"), namespace)
        ran += 1
    assert ran >= 4
