"""Offline tests of the fetch layer: a tiny fake Imagenette archive and reference tree served
through ``file://`` URLs exercise the real download, conversion and verification code."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spaceevo_lib._io import file_hash
from spaceevo_lib.data import fetch as F
from spaceevo_lib.data.download import download
from spaceevo_lib.data.errors import CorruptDataError, DataError, MissingDataError

N_TRAIN, N_VAL, PER_CLASS = 4, 2, 2
SHAPES = [(37, 23), (16, 48), (70, 70), (25, 90), (41, 12), (9, 64)]


def _jpeg(seed: int, size: tuple[int, int], gray: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(0, 256, (h, w) if gray else (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "L" if gray else "RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes | None = None) -> None:
    info = tarfile.TarInfo(name)
    if data is None:
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
    else:
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))


def make_archive(path: Path, wnids=F.IMAGENETTE_WNIDS) -> dict[str, bytes]:
    """Fake imagenette2-160.tgz; members added in reverse order so sorting is really tested."""
    members: dict[str, bytes] = {}
    seed = 0
    for wnid in wnids:
        for split, n in (("train", N_TRAIN), ("val", N_VAL)):
            for i in range(n):
                seed += 1
                gray = wnid == wnids[1] and split == "train" and i == 0
                name = f"{split}/{wnid}/{wnid}_{(7 * i) % 10}{i}.JPEG"
                members[name] = _jpeg(seed, SHAPES[seed % len(SHAPES)], gray)
    with tarfile.open(path, "w:gz") as tf:
        _add(tf, "imagenette2-160")
        _add(tf, "imagenette2-160/noisy_imagenette.csv", b"path,noisy_labels_0\n")
        for name in reversed(list(members)):
            _add(tf, f"imagenette2-160/{name}", members[name])
    return members


def expected(data: bytes, size: int) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BOX))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    src = tmp_path_factory.mktemp("src") / "imagenette2-160.tgz"
    members = make_archive(src)
    data = tmp_path_factory.mktemp("data")
    out = F.fetch("imagenette", data, url=src.as_uri(), md5=md5(src),
                  train_per_class={64: PER_CLASS})
    return src, members, data, out


# ------------------------------------------------------------------------------ Imagenette

def test_fetch_imagenette_layout(fetched):
    src, members, data, out = fetched
    assert set(out) == {32, 64}
    assert (data / "downloads" / "imagenette2-160.tgz").read_bytes() == src.read_bytes()
    for size, path in out.items():
        assert path == data / "imagenette" / f"imagenette-{size}.npz"
        with np.load(path) as z:  # no allow_pickle: every array is plain numpy
            a = {k: z[k] for k in z.files}
        assert sorted(a) == sorted(["x_train", "y_train", "x_test", "y_test", "classes", "wnids",
                                    "files_train", "files_test"])
        assert list(a["wnids"]) == sorted(F.IMAGENETTE_WNIDS)
        assert list(a["classes"]) == list(F.IMAGENETTE_CLASSES)
        for k in ("classes", "wnids", "files_train", "files_test"):
            assert a[k].dtype.kind == "U"
        n_train = 10 * (PER_CLASS if size == 64 else N_TRAIN)
        for split, prefix, n in (("train", "train", n_train), ("test", "val", 10 * N_VAL)):
            x, y, f = a[f"x_{split}"], a[f"y_{split}"], a[f"files_{split}"]
            assert x.dtype == np.uint8 and x.shape == (n, size, size, 3)
            assert y.dtype == np.int64 and y.shape == (n,)
            keys = [(int(c), s.split("/")[-1]) for c, s in zip(y, f)]
            assert keys == sorted(keys)  # source order: class index, then file name
            for c, s, img in zip(y, f, x):
                part, wnid, _ = s.split("/")
                assert part == prefix and a["wnids"][c] == wnid
                assert np.array_equal(img, expected(members[s], size))
        if size == 32:  # all images kept
            assert sorted(a["files_train"]) == sorted(m for m in members if m[:5] == "train")
            assert sorted(a["files_test"]) == sorted(m for m in members if m[:3] == "val")


def test_grayscale_becomes_rgb(fetched):
    _, _, _, out = fetched
    with np.load(out[32]) as z:
        files, x = z["files_train"], z["x_train"]
    gray = [i for i, f in enumerate(files) if f.startswith(f"train/{F.IMAGENETTE_WNIDS[1]}/")][0]
    img = x[gray].astype(int)
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])


def test_subset_follows_rng_recipe(fetched):
    _, _, _, out = fetched
    with np.load(out[32]) as full, np.load(out[64]) as sub:
        y, f32, x32 = full["y_train"], full["files_train"], full["x_train"]
        f64, y64 = sub["files_train"], sub["y_train"]
        xt32, xt64 = full["x_test"], sub["x_test"]
        ft32, ft64 = full["files_test"], sub["files_test"]
    rng = np.random.default_rng(0)
    keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), size=PER_CLASS,
                                              replace=False) for c in range(10)]))
    assert np.array_equal(f64, f32[keep]) and np.array_equal(y64, y[keep])
    assert np.bincount(y64).tolist() == [PER_CLASS] * 10
    assert np.array_equal(ft64, ft32) and len(xt64) == len(xt32)
    assert len(x32) == 10 * N_TRAIN


def test_manifest_matches_files(fetched):
    src, _, data, out = fetched
    man = json.loads((data / "imagenette" / "MANIFEST.json").read_text())
    assert man["source_url"] == src.as_uri()
    assert man["archive_md5"] == md5(src)
    assert man["recipe"] and man["date"]
    assert set(man["files"]) == {p.name for p in out.values()}
    for size, path in out.items():
        entry = man["files"][path.name]
        assert entry["sha256"] == file_hash(path)
        assert entry["bytes"] == path.stat().st_size
        with np.load(path) as z:
            assert {k: tuple(v["shape"]) for k, v in entry["arrays"].items()} == \
                {k: z[k].shape for k in z.files}
    assert not [p for p in files_under(data) if p.name.endswith(".part")]


def test_converted_files_load_through_the_loader(fetched):
    from spaceevo_lib.data.imagenette import load_imagenette
    _, _, data, _ = fetched
    arrays = load_imagenette(64, root=data)
    assert arrays.origin == "converted by spaceevo fetch"
    assert arrays.x_train.shape == (10 * PER_CLASS, 64, 64, 3)


def test_present_archive_is_not_downloaded_again(fetched, tmp_path):
    src, _, data, _ = fetched
    data2 = tmp_path / "data"
    (data2 / "downloads").mkdir(parents=True)
    (data2 / "downloads" / src.name).write_bytes(src.read_bytes())
    missing_url = (tmp_path / "nowhere" / src.name).as_uri()  # would fail if downloaded
    out = F.fetch_imagenette(data2, url=missing_url, md5=md5(src), sizes=(32,),
                             keep_archive=False)
    assert set(out) == {32} and out[32].is_file()
    assert not (data2 / "downloads" / src.name).exists()


def test_wrong_md5_leaves_nothing(fetched, tmp_path):
    src = fetched[0]
    with pytest.raises(CorruptDataError) as e:
        F.fetch_imagenette(tmp_path / "data", url=src.as_uri(), md5="0" * 32)
    assert src.as_uri() in str(e.value) and "0" * 32 in str(e.value) and md5(src) in str(e.value)
    assert files_under(tmp_path / "data") == []


def test_unreachable_url_is_a_data_error(tmp_path):
    url = (tmp_path / "does-not-exist" / "imagenette2-160.tgz").as_uri()
    with pytest.raises(DataError) as e:
        F.fetch_imagenette(tmp_path / "data", url=url)
    assert url in str(e.value) and "SPACEEVO_DATA_DIR" in str(e.value)
    assert files_under(tmp_path / "data") == []


def test_archive_missing_a_class(tmp_path):
    src = tmp_path / "imagenette2-160.tgz"
    make_archive(src, wnids=F.IMAGENETTE_WNIDS[:-1])
    with pytest.raises(CorruptDataError, match=F.IMAGENETTE_WNIDS[-1]):
        F.convert_imagenette(src, tmp_path / "out")
    assert files_under(tmp_path / "out") == []


def test_too_few_images_per_class(tmp_path):
    src = tmp_path / "imagenette2-160.tgz"
    make_archive(src)
    with pytest.raises(CorruptDataError, match="fewer"):
        F.convert_imagenette(src, tmp_path / "out", train_per_class={64: N_TRAIN + 1})
    with pytest.raises(MissingDataError):
        F.convert_imagenette(tmp_path / "absent.tgz", tmp_path / "out")
    assert files_under(tmp_path / "out") == []


# ------------------------------------------------------------------------ download, dispatch

def test_download_verifies_sha256(tmp_path):
    src = tmp_path / "blob.bin"
    src.write_bytes(b"spaceevo" * 1000)
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = download(src.as_uri(), tmp_path / "d" / "blob.bin", sha256=good, md5=md5(src))
    assert dest.read_bytes() == src.read_bytes()
    with pytest.raises(CorruptDataError, match="sha256"):
        download(src.as_uri(), tmp_path / "e" / "blob.bin", sha256="f" * 64)
    assert files_under(tmp_path / "e") == []


def test_unknown_name():
    with pytest.raises(ValueError, match="imagenette.*spaceevo-reference"):
        F.fetch("cifar10")


# ------------------------------------------------------------------------ reference artifacts

@pytest.fixture
def upstream(tmp_path, monkeypatch):
    """Three fake upstream files and a manifest that pins them."""
    root = tmp_path / "upstream"
    files = {
        "LICENSE": ("LICENSE", b"MIT License\n"),
        "block_lut/onnxw/stage1_0_0.csv": ("SpaceEvo/data/block_lut/onnxw/stage1_0_0.csv",
                                           b"3#16#None, 1x16x112x112, 0.1, 1.0, 0.01, 0.2\n"),
        "onnx_latency.csv": ("SpaceEvo/onnx_tools/latency.csv", b"model,fp32,int8\nA0,7.85,3.84\n"),
    }
    man = {"commit": "c0ffee", "base_url": "https://example.invalid/{commit}/", "files": {}}
    for local, (up, data) in files.items():
        (root / up).parent.mkdir(parents=True, exist_ok=True)
        (root / up).write_bytes(data)
        man["files"][local] = {"upstream": up, "sha256": hashlib.sha256(data).hexdigest(),
                               "bytes": len(data)}
    monkeypatch.setattr(F, "reference_manifest", lambda: man)
    return root, files, man


def test_fetch_reference(upstream, tmp_path):
    root, files, _ = upstream
    data = tmp_path / "data"
    paths = F.fetch("spaceevo-reference", data, base_url=root.as_uri())
    assert sorted(paths) == sorted(data / "spaceevo-reference" / k for k in files)
    for local, (_, content) in files.items():
        assert (data / "spaceevo-reference" / local).read_bytes() == content
    # Present files with the right hash are kept, so an offline rerun succeeds.
    again = F.fetch_reference(data, base_url=(tmp_path / "offline").as_uri())
    assert sorted(again) == sorted(paths)


def test_fetch_reference_tampered(upstream, tmp_path):
    root, files, _ = upstream
    up, _ = files["LICENSE"]
    (root / up).write_bytes(b"tampered\n")
    data = tmp_path / "data"
    with pytest.raises(CorruptDataError, match="sha256"):
        F.fetch_reference(data, base_url=root.as_uri() + "/")
    assert not (data / "spaceevo-reference" / "LICENSE").exists()
    assert not [p for p in files_under(data) if p.name.endswith(".part")]


def test_reference_default_base_url(upstream, tmp_path, monkeypatch):
    _, files, man = upstream
    urls: list[str] = []
    monkeypatch.setattr(F, "download", lambda url, dest, **kw: urls.append(url))
    F.fetch_reference(tmp_path / "data")
    assert sorted(urls) == sorted(f"https://example.invalid/c0ffee/{up}" for up, _ in
                                  files.values())


def test_packaged_reference_manifest():
    man = F.reference_manifest()
    assert len(man["files"]) == 346 and len(man["commit"]) == 40
    assert all(len(e["sha256"]) == 64 for e in man["files"].values())


def test_the_book_command_fetches_what_is_missing_and_offline_says_how_to_get_it(
        upstream, tmp_path):
    """``make book`` / ``make test`` call ensure_data first: on a fresh machine it fetches
    both data sets (here over file:// URLs), then nothing; offline it stops with the message
    naming the URL and the two ways to get the data, leaving nothing half-written."""
    root, files, _ = upstream
    src = tmp_path / "src" / "imagenette2-160.tgz"
    src.parent.mkdir()
    make_archive(src)
    options = {"imagenette": {"url": src.as_uri(), "md5": md5(src),
                              "train_per_class": {64: PER_CLASS}},
               "spaceevo_reference": {"base_url": root.as_uri()}}
    data = tmp_path / "data"
    assert F.missing_data(data) == ["imagenette", "spaceevo-reference"]
    assert F.ensure_data(data, **options) == ["imagenette", "spaceevo-reference"]
    assert F.missing_data(data) == [] and F.ensure_data(data, **options) == []
    offline = tmp_path / "offline"
    gone = (tmp_path / "nowhere" / "imagenette2-160.tgz").as_uri()
    with pytest.raises(DataError) as e:
        F.ensure_data(offline, imagenette={"url": gone})
    assert gone in str(e.value) and "SPACEEVO_DATA_DIR" in str(e.value)
    assert files_under(offline) == []

