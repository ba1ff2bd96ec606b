"""The new sources, domains, captions, attributes and uint8 storage, through the prepare stage."""

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from components.errors import ConfigError
from components.data.batch import DataSpec
from components.data.captions import TEMPLATES, phrasings
from components.data.prepared import read_spec, read_split, write_split
from components.data.sources import images as image_sources
from components.data.formats import DataFormatError
from components.data.sources import DataSourceError, SourceFile, load_source
from test_data import run_prepare

REPO = Path(__file__).resolve().parents[1]


def write_folder(root, images_per_class: dict, mode: str, sizes=((12, 12),), seed=0):
    """Class subfolders of PNGs; returns {class: [uint8 arrays]} as written."""
    rng = np.random.default_rng(seed)
    written = {}
    for name, count in images_per_class.items():
        (root / name).mkdir(parents=True)
        written[name] = []
        for i in range(count):
            w, h = sizes[i % len(sizes)]
            array = rng.integers(0, 256, (h, w) if mode == "L" else (h, w, 3), dtype=np.uint8)
            Image.fromarray(array, mode=mode).save(root / name / f"{i:03d}.png")
            written[name].append(array)
    return written


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_image_folder_round_trips_the_pixels(tmp_path, mode):
    written = write_folder(tmp_path / "raw", {"cat": 12, "dog": 12}, mode)
    result = run_prepare(tmp_path, {"source": "image_folder", "path": str(tmp_path / "raw"), "image_size": 12,
                                    "binarize": "none", "valid_fraction": 0.2, "test_fraction": 0.2})
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "data/prepared"
    splits = [read_split(folder, s, "grayscale") for s in ("train", "valid", "test")]
    channels = 3 if mode == "RGB" else 1
    assert splits[0].image_shape == (channels, 12, 12) and splits[0].meta["class_names"] == ["cat", "dog"]
    assert sum(len(s.images) for s in splits) == 24
    # Every written image comes back, with its class, within one 8-bit level.
    originals = {(name, a.tobytes()): (a / 255.0) for name, arrays in written.items() for a in arrays}
    found = 0
    for split in splits:
        for image, label in zip(split.images, split.labels):
            stored = image[0] if channels == 1 else image.transpose(1, 2, 0)
            matches = [v for (name, _), v in originals.items()
                       if name == ["cat", "dog"][label] and np.abs(v - stored).max() <= 1 / 255 + 1e-6]
            found += len(matches) == 1
    assert found == 24
    assert pq.read_schema(folder / "train.parquet").field("image").type.value_type == "uint8"


def test_image_folder_resizes_mixed_sizes(tmp_path):
    write_folder(tmp_path / "raw", {"a": 6, "b": 6}, "RGB", sizes=((40, 30), (9, 17), (16, 16)))
    result = run_prepare(tmp_path, {"source": "image_folder", "path": str(tmp_path / "raw"), "image_size": 16,
                                    "valid_fraction": 0.2, "test_fraction": 0.2})
    assert result.returncode == 0, result.stderr
    train = read_split(tmp_path / "data/prepared", "train")
    assert train.images.shape[1:] == (3, 16, 16) and train.meta["levels"] == 256


@pytest.mark.parametrize("problem", ["corrupt", "empty", "no_size"])
def test_image_folder_errors_name_the_file_and_leave_no_output(tmp_path, problem):
    raw = tmp_path / "raw"
    write_folder(raw, {"a": 4, "b": 4}, "RGB")
    bad = raw / "b" / "001.png"
    data = {"source": "image_folder", "path": str(raw), "image_size": 8}
    if problem == "corrupt":
        bad.write_bytes(bad.read_bytes()[:60])   # a truncated PNG
        expected = f"{bad}: not a readable PNG or JPEG image"
    elif problem == "empty":
        (raw / "c").mkdir()
        expected = f"{raw / 'c'}: empty class folder"
    else:
        del data["image_size"]
        expected = "data.image_size: source 'image_folder' needs"
    result = run_prepare(tmp_path, data)
    assert result.returncode != 0 and expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "prepared").exists()
    assert not list((tmp_path / "data").glob(".prepared*"))


def test_image_folder_memory_follows_the_output_size_not_the_files(tmp_path):
    """12 PNGs of 3000x3000 (27 MB each decoded): each is resized to 16x16 as soon as it is decoded."""
    ramp = (np.add.outer(np.arange(3000), np.arange(3000)) % 256).astype(np.uint8)
    (tmp_path / "raw/a").mkdir(parents=True)
    Image.fromarray(np.stack([ramp, ramp.T, 255 - ramp], -1)).save(tmp_path / "raw/a/000.png")
    for i in range(1, 12):
        folder = tmp_path / "raw" / "ab"[i % 2]
        folder.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "raw/a/000.png", folder / f"{i:03d}.png")
    script = ("import resource, sys\n"
              "from components.data.sources import load_source\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "splits = load_source('image_folder', path=sys.argv[1], image_size=16, valid_fraction=0.2,"
              " test_fraction=0.2)\n"
              "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
              "print(grown // 1024, sum(len(s) for s in splits.values()))\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "raw")], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert done.returncode == 0, done.stderr
    grown_mb, count = map(int, done.stdout.split())
    # measured: 36 MB (one decoded image); 452 MB when every image was decoded before resizing
    assert count == 12 and grown_mb < 100, f"peak memory grew by {grown_mb} MB"


def bomb(path: Path) -> Path:
    """A PNG of 13400x13400 one-bit pixels (22 KB on disk): over twice PIL's MAX_IMAGE_PIXELS."""
    Image.new("1", (13400, 13400)).save(path)
    return path


@pytest.mark.parametrize("problem", ["bomb", "gif_named_png", "bmp_named_jpg"])
def test_image_folder_refuses_bombs_and_other_formats_in_one_line_naming_the_file(tmp_path, problem):
    raw = tmp_path / "raw"
    write_folder(raw, {"a": 4, "b": 4}, "RGB")
    if problem == "bomb":
        bad = bomb(raw / "b" / "big.png")
        expected = f"{bad}: refused as a possible decompression bomb (Image size (179560000 pixels) exceeds limit"
    else:
        bad = raw / "a" / ("odd.png" if problem == "gif_named_png" else "odd.jpg")
        Image.new("RGB", (8, 8)).save(bad, format="GIF" if problem == "gif_named_png" else "BMP")
        expected = f"{bad}: not a readable PNG or JPEG image"
    result = run_prepare(tmp_path, {"source": "image_folder", "path": str(raw), "image_size": 8})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "data" / "prepared").exists()
    assert not [p for p in (tmp_path / "data").rglob("*") if p.name != "raw"]


def test_an_image_over_pils_warning_limit_is_refused_too(tmp_path, monkeypatch):
    """Between MAX_IMAGE_PIXELS and twice it PIL only warns; a dataset refuses it all the same."""
    write_folder(tmp_path / "raw", {"a": 3, "b": 3}, "L", sizes=((12, 12),))
    Image.new("L", (30, 30)).save(tmp_path / "raw/a/big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)   # 900 pixels: over the limit, under twice it
    with pytest.raises(DataFormatError, match=r"big.png: refused as a possible decompression bomb"):
        load_source("image_folder", path=str(tmp_path / "raw"), image_size=8, valid_fraction=0.2, test_fraction=0.2)


def test_a_large_jpeg_decodes_at_a_reduced_scale_to_its_colour(tmp_path):
    for name, colour in (("red", (200, 30, 40)), ("blue", (20, 40, 220))):
        (tmp_path / "raw" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (2400, 1600), colour).save(tmp_path / "raw" / name / f"{i}.jpg", quality=95)
    splits = load_source("image_folder", path=str(tmp_path / "raw"), image_size=8, valid_fraction=0.2,
                         test_fraction=0.2)
    images = np.concatenate([splits[k].images for k in ("train", "valid", "test")])
    labels = np.concatenate([splits[k].labels for k in ("train", "valid", "test")])
    for label, colour in enumerate(((200, 30, 40), (20, 40, 220))):   # classes sorted: blue, red
        expected = np.array(((20, 40, 220), (200, 30, 40))[label]) / 255
        assert np.abs(images[labels == label].mean(axis=(2, 3)) - expected).max() < 3 / 255


def fake_cifar(folder, monkeypatch, per_batch=6) -> Path:
    """CIFAR-10's extracted folder with random batches (pickled as numpy arrays, lists and bytes, like
    the real ones), their md5s made the published ones for the test."""
    rng = np.random.default_rng(0)
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, per_batch).tolist(), b"batch_label": name.encode()}
        (batches / name).write_bytes(pickle.dumps(batch, protocol=4))
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer",
                                  "dog", "frog", "horse", "ship", "truck")]
    (batches / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=4))
    monkeypatch.setattr(image_sources, "CIFAR10_MEMBERS",
                        {n: hashlib.md5((batches / n).read_bytes()).hexdigest() for n in image_sources.CIFAR10_MEMBERS})
    return batches


def test_cifar10_from_a_local_extracted_folder(tmp_path, monkeypatch):
    fake_cifar(tmp_path / "raw", monkeypatch)
    splits = load_source("cifar10", path=str(tmp_path / "raw"))
    assert {k: s.images.shape for k, s in splits.items()} == {
        "train": (25, 3, 32, 32), "valid": (5, 3, 32, 32), "test": (6, 3, 32, 32)}
    meta = splits["train"].meta
    assert meta["class_names"][0] == "airplane" and len(meta["class_names"]) == 10 and meta["levels"] == 256
    batch = pickle.loads((tmp_path / "raw/cifar-10-batches-py/data_batch_1").read_bytes())
    np.testing.assert_array_equal(np.round(splits["train"].images[0] * 255), batch[b"data"][0].reshape(3, 32, 32))
    assert splits["train"].labels[:6].tolist() == batch[b"labels"]
    (tmp_path / "raw/cifar-10-batches-py/test_batch").write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match=r"test_batch: md5 \w+ is not the published \w+ of CIFAR-10's test_batch"):
        load_source("cifar10", path=str(tmp_path / "raw"))


def test_the_published_cifar10_checksums_are_torchvisions():
    assert image_sources.CIFAR10.md5 == "c58f30108f718f92721af3b95e74349a"
    assert image_sources.CIFAR10_MEMBERS["batches.meta"] == "5ff9c542aee3614f3951f8cda6e48888"
    assert image_sources.CIFAR10_MEMBERS["test_batch"] == "40351d587109b95175f43aff81a1287e"


class Planted:
    """Unpickling it opens (creates) a file: any code a pickle may run."""
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def tar_of(batches: Path, archive: Path) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    return archive


@pytest.mark.parametrize("where", ["folder", "archive", "cache"])
def test_a_planted_cifar10_batches_meta_is_refused_by_its_md5_not_executed(tmp_path, monkeypatch, where):
    batches = fake_cifar(tmp_path / "raw", monkeypatch)
    marker = tmp_path / "ran"
    (batches / "batches.meta").write_bytes(pickle.dumps(Planted(marker)))
    options = {"path": str(tmp_path / "raw")}
    expected = f"{batches / 'batches.meta'}: md5 "
    if where != "folder":   # an archive that passes as the published one, holding the planted file
        archive = tar_of(batches, tmp_path / ("raw" if where == "archive" else "cache/cifar10") / "cifar-10-python.tar.gz")
        monkeypatch.setattr(image_sources, "CIFAR10", SourceFile(archive.name, hashlib.md5(archive.read_bytes()).hexdigest()))
        shutil.rmtree(batches)
        options = {"path": str(tmp_path / "raw")} if where == "archive" else {"cache_dir": tmp_path / "cache"}
        expected = f"{archive}:cifar-10-batches-py/batches.meta: md5 "
    with pytest.raises(DataFormatError) as refused:
        load_source("cifar10", **options)
    assert str(refused.value).startswith(expected) and "\n" not in str(refused.value)
    assert "is not the published" in str(refused.value) and not marker.exists()


@pytest.mark.parametrize("where", ["archive", "cache"])
def test_the_prepare_stage_refuses_a_cifar10_archive_that_is_not_the_published_one_in_one_line(tmp_path, where):
    with pytest.MonkeyPatch.context() as patch:   # undone at once: the stage's checksums are the real ones
        batches = fake_cifar(tmp_path / "raw", patch)
    marker = tmp_path / "ran"
    (batches / "batches.meta").write_bytes(pickle.dumps(Planted(marker)))
    archive = tar_of(batches, tmp_path / ("raw" if where == "archive" else "data/raw/cifar10") / "cifar-10-python.tar.gz")
    shutil.rmtree(batches)
    result = run_prepare(tmp_path, {"source": "cifar10", **({"path": str(tmp_path / "raw")} if where == "archive" else {})})
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert f"{archive}: md5 " in result.stderr and "is not the published c58f30108f718f92721af3b95e74349a" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not marker.exists() and not (tmp_path / "data/prepared").exists()


def test_the_cifar10_unpickler_refuses_everything_but_arrays_lists_dicts_str_bytes_and_int(tmp_path, monkeypatch):
    """Even a file that passed its checksum (here: one whose md5 the test declares published)."""
    batches = fake_cifar(tmp_path / "raw", monkeypatch)
    marker = tmp_path / "ran"
    (batches / "batches.meta").write_bytes(pickle.dumps({b"label_names": Planted(marker)}))
    published = dict(image_sources.CIFAR10_MEMBERS,
                     **{"batches.meta": hashlib.md5((batches / "batches.meta").read_bytes()).hexdigest()})
    monkeypatch.setattr(image_sources, "CIFAR10_MEMBERS", published)
    with pytest.raises(DataFormatError, match=r"batches.meta: not a CIFAR-10 python batch \(io.open is not "
                                              r"allowed in a CIFAR-10 batch \(numpy arrays, lists, dicts"):
        load_source("cifar10", path=str(tmp_path / "raw"))
    assert not marker.exists()
    pickle.loads((batches / "batches.meta").read_bytes())   # what the plant does when trusted
    assert marker.exists()
    meta = {b"label_names": [b"a"] * 10, b"n": 3, b"s": "text", b"array": np.arange(3)}
    assert image_sources._unpickle(pickle.dumps(meta, protocol=4), "x")[b"s"] == "text"
    # the real batches were pickled by numpy 1, as numpy.core.multiarray._reconstruct
    numpy1 = pickle.dumps(meta, protocol=3).replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"numpy.core.multiarray" in numpy1
    np.testing.assert_array_equal(image_sources._unpickle(numpy1, "x")[b"array"], np.arange(3))
    with pytest.raises(DataFormatError, match=r"x: not a CIFAR-10 python batch \(numpy.*scalar is not allowed"):
        image_sources._unpickle(pickle.dumps({b"n": np.int64(3)}, protocol=4), "x")


def test_photo_patches_are_rgb_seeded_and_labelled_by_photo():
    one = load_source("photo_patches", count=60, image_size=16, seed=4)
    again = load_source("photo_patches", count=60, image_size=16, seed=4)
    other = load_source("photo_patches", count=60, image_size=16, seed=5)
    assert one["train"].images.shape[1:] == (3, 16, 16) and one["train"].meta["class_names"] == ["china", "flower"]
    assert sum(len(s) for s in one.values()) == 60
    np.testing.assert_array_equal(one["test"].images, again["test"].images)
    assert not np.array_equal(one["train"].images, other["train"].images)
    assert set(np.concatenate([s.labels for s in one.values()])) == {0, 1}
    # Colour, not gray copied three times.
    assert np.abs(one["train"].images[:, 0] - one["train"].images[:, 2]).mean() > 0.01


def test_unknown_source_lists_the_valid_ones():
    with pytest.raises(DataSourceError, match="unknown data source 'nope'; valid sources: .*cifar10.*photo_patches"):
        load_source("nope")


def test_uint8_storage_is_exact_and_four_times_smaller(tmp_path):
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 256, (3000, 1, 16, 16)).astype(np.float32)
    images = levels / 255
    meta = {"source": "t", "image_shape": [1, 16, 16], "levels": 256, "binarization": "none", "split": "train"}
    write_split(tmp_path / "train.parquet", images, None, meta)
    assert pq.read_schema(tmp_path / "train.parquet").field("image").type.value_type == "uint8"
    back = read_split(tmp_path, "train")
    np.testing.assert_array_equal(np.round(back.images * 255), levels)
    assert np.abs(back.images - images).max() < 1e-6
    # Random pixels do not compress: the file is one byte a pixel, a quarter of float32's four.
    assert (tmp_path / "train.parquet").stat().st_size < 1.1 * images.size < 0.3 * images.astype(np.float32).nbytes
    assert pq.ParquetFile(tmp_path / "train.parquet").metadata.num_row_groups == 2


def test_domains_are_disjoint_transformed_copies_with_attributes_and_a_spec(tmp_path):
    result = run_prepare(tmp_path, {"source": "digits", "binarize": "static", "domains": [
        {"name": "plain", "source": "digits"}, {"name": "thick", "source": "digits", "transform": "thicken"},
        {"name": "turned", "source": "digits", "transform": "rotate90"}]})
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "data/prepared"
    train = read_split(folder, "train", "grayscale")
    counts = np.bincount(train.domains)
    assert len(counts) == 3 and counts.max() - counts.min() <= 1 and (np.diff(train.domains) >= 0).all()
    # Each digits image lands in one domain only: the plain images and the un-rotated turned ones differ.
    plain, turned = train.images[train.domains == 0], train.images[train.domains == 2]
    unturned = np.rot90(turned, -1, axes=(2, 3))
    assert not (plain.reshape(len(plain), 1, -1) == unturned.reshape(1, len(unturned), -1)).all(-1).any()
    thick = train.images[train.domains == 1]
    assert thick.mean() > plain.mean() + 0.1    # dilation brightens
    assert train.meta["attribute_names"] == ["rotated", "thick"]
    np.testing.assert_array_equal(train.attributes[train.domains == 1], [[0, 1]] * counts[1])
    spec = read_spec(folder, "binary")
    assert spec.domain_names == ("plain", "thick", "turned") and spec.levels == 2
    assert spec.image_shape == (1, 8, 8) and set(spec.fields) == {"labels", "attributes", "domains"}
    assert DataSpec.from_dict(spec.to_dict()) == spec


def test_domains_of_gray_and_rgb_sources_share_one_shape(tmp_path):
    result = run_prepare(tmp_path, {"source": "digits", "image_size": 8, "count": 50, "domains": [
        {"name": "digits", "source": "digits"}, {"name": "photos", "source": "photo_patches"}]})
    assert result.returncode == 0, result.stderr
    train = read_split(tmp_path / "data/prepared", "train")
    assert train.images.shape[1:] == (3, 8, 8) and train.labels is None and train.meta["levels"] == 256
    assert read_spec(tmp_path / "data/prepared", "grayscale").fields == ("domains",)


@pytest.mark.parametrize("data, key", [({"source": "digits", "image_sise": 8}, "data.image_sise: unknown key"),
                                       ({"source": "digits", "captions": "yes"},
                                        "data.captions = 'yes': must be true or false"),
                                       ({"source": "digits", "domains": [{"name": "a", "source": "digits",
                                                                          "transform": "blur"}]},
                                        "data.domains[0].transform = 'blur': must be one of identity, thicken"),
                                       ({"source": "binarized_mnist", "captions": True, "path": "/nowhere"},
                                        "data.path /nowhere is not a folder")])
def test_prepare_names_the_bad_key(tmp_path, data, key):
    result = run_prepare(tmp_path, data)
    assert result.returncode != 0 and key in result.stderr and "Traceback" not in result.stderr


def test_captions_hold_out_phrasings_for_test_and_tokenize_unknown_words(tmp_path):
    result = run_prepare(tmp_path, {"source": "digits", "captions": True, "seed": 3,
                                    "max_examples": {"train": 300}})
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "data/prepared"
    train, test = read_split(folder, "train"), read_split(folder, "test")
    held_out = phrasings(3)["test"]

    def phrasing(caption):
        number = [w for w in caption.split() if w in ("zero", "one", "two", "three", "four", "five", "six",
                                                     "seven", "eight", "nine")][0]
        return next(i for i, t in enumerate(TEMPLATES)
                    if t.format(name=number, noun="handwritten digit") == caption)
    train_phrasings = {phrasing(c) for c in train.captions}
    test_phrasings = {phrasing(c) for c in test.captions}
    assert test_phrasings == set(held_out) and not test_phrasings & train_phrasings
    assert len(train_phrasings) == len(TEMPLATES) - len(held_out)
    assert "seven" in train.captions[np.flatnonzero(train.labels == 7)[0]]
    spec = read_spec(folder, "binary")
    assert spec.vocabulary[:2] == ("<pad>", "<unk>") and list(spec.vocabulary[2:]) == sorted(spec.vocabulary[2:])
    assert "captions" in spec.fields
    tokens = spec.tokenize("a picture of zebra seven", 8)
    assert tokens[3] == 1 and tokens[4] == spec.vocabulary.index("seven") and tokens[5:] == [0, 0, 0]


def test_a_model_needing_labels_on_unlabelled_data_fails_naming_model_field_and_source(tmp_path):
    images = np.random.default_rng(0).integers(0, 2, (10, 1, 4, 4)).astype(np.float32)
    write_split(tmp_path / "train.parquet", images, None, {"source": "binarized_mnist", "image_shape": [1, 4, 4],
                                                           "levels": 2, "binarization": "none", "split": "train"})
    spec = read_spec(tmp_path, "binary")
    assert spec.fields == () and spec.levels == 2
    with pytest.raises(ConfigError, match="model 'cond_vae' needs labels .* data source 'binarized_mnist'"):
        spec.require("cond_vae", ["labels"])
    json.dumps(spec.to_dict())


def test_the_evaluation_classifier_learns_rgb_photo_patches():
    from components.classifier import accuracy_of, train_classifier

    data = load_source("photo_patches", count=400, image_size=16, seed=0)
    train, valid, test = data["train"], data["valid"], data["test"]
    model, _ = train_classifier(train.images, train.labels, valid.images, valid.labels, 2, epochs=4, batch_size=32,
                                lr=3e-3, seed=0, log=lambda _: None)
    majority = max(np.mean(test.labels), 1 - np.mean(test.labels))
    assert accuracy_of(model, test.images, test.labels) > max(0.8, majority + 0.1)
