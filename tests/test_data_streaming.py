"""The streaming reader: shards, shuffles, per-domain batches, dynamic binarization, flat memory."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from components.data.batch import to_batch
from components.data.binarization import bernoulli_draw
from components.data.prepared import draw_binary, read_split, write_split
from components.data.streaming import count_batches, eval_batches, shard_ranges, stream_batches

REPO = Path(__file__).resolve().parents[1]


def write_data(folder, n, domains=None, shape=(1, 4, 4), row_group=64, split="train", seed=0):
    """A split of n random 256-level images whose first pixel encodes the row (for checks)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    domain_names = [{"name": f"d{i}"} for i in range(1 + (0 if domains is None else int(domains.max())))]
    meta = {"source": "synthetic", "image_shape": list(shape), "levels": 256, "binarization": "dynamic",
            "threshold": 0.5, "seed": 0, "class_names": [str(i) for i in range(10)], "domains": domain_names,
            "split": split}
    write_split(Path(folder) / f"{split}.parquet", images, rng.integers(0, 10, n), meta, domains=domains,
                row_group=row_group)
    return images


def epoch_rows(folder, **kwargs):
    return [b.extra["rows"].tolist() for b in stream_batches(folder, "train", "grayscale", **kwargs)]


def test_one_epoch_over_ranks_is_the_shard_set_exactly(tmp_path):
    images = write_data(tmp_path, 1003)
    world, seen = 3, []
    for epoch in (1, 2):
        seen = []
        for rank in range(world):
            batches = list(stream_batches(tmp_path, "train", "grayscale", 50, rank, world, seed=1, epoch=epoch,
                                          shuffle_buffer=100))
            assert len(batches) == count_batches(tmp_path, "train", 50, world) == 7
            rows = [r for b in batches for r in b.extra["rows"].tolist()]
            mine = {r for a, b in shard_ranges(0, 1003, rank, world, epoch) for r in range(a, b)}
            assert sorted(rows) == sorted(mine) and len(rows) == 334
            for b in batches:   # every image arrives with its own pixels and label
                expected = images[b.extra["rows"].numpy()].astype(np.float32) / 255
                np.testing.assert_allclose(b.images.numpy(), expected, atol=1e-6)
            seen += rows
        assert len(seen) == len(set(seen)) == 1002
    # The row left over each epoch (1003 = 3 * 334 + 1) is not always the same one.
    assert set(range(1003)) - set(seen) != {r for r in range(1003)} - {
        r for rank in range(3) for a, b in shard_ranges(0, 1003, rank, 3, 1) for r in range(a, b)}


def test_epochs_shuffle_differently_and_seeds_repeat(tmp_path):
    write_data(tmp_path, 500)
    first = epoch_rows(tmp_path, batch_size=32, seed=0, epoch=1, shuffle_buffer=128)
    assert first == epoch_rows(tmp_path, batch_size=32, seed=0, epoch=1, shuffle_buffer=128)
    assert first != epoch_rows(tmp_path, batch_size=32, seed=0, epoch=2, shuffle_buffer=128)
    assert first != epoch_rows(tmp_path, batch_size=32, seed=1, epoch=1, shuffle_buffer=128)
    flat = [r for b in first for r in b]
    assert sorted(flat) == list(range(500)) and flat != sorted(flat)
    # Shuffled beyond one row group: the first batch draws from several of the 64-row groups.
    assert len({r // 64 for r in first[0]}) > 2


def test_per_domain_batches_are_equal_unpaired_and_split_by_domain(tmp_path):
    domains = np.repeat([0, 1], [300, 200])
    write_data(tmp_path, 500, domains=domains)
    pairs = {}
    for epoch in (1, 2):
        batches = list(stream_batches(tmp_path, "train", "grayscale", 20, seed=0, epoch=epoch, per_domain=True,
                                      shuffle_buffer=64))
        assert len(batches) == count_batches(tmp_path, "train", 20, per_domain=True) == 30
        pairs[epoch] = []
        for batch in batches:
            assert torch.bincount(batch.domains, minlength=2).tolist() == [10, 10]
            zero, one = batch.by_domain(2)
            assert (zero.extra["rows"] < 300).all() and (one.extra["rows"] >= 300).all()
            assert (zero.domains == 0).all() and len(one) == 10
            pairs[epoch] += list(zip(zero.extra["rows"].tolist(), one.extra["rows"].tolist()))
        # The largest domain is seen whole; the smaller one cycles, reshuffled.
        assert sorted(a for a, _ in pairs[epoch]) == list(range(300))
        assert set(b for _, b in pairs[epoch]) == set(range(300, 500))
    # Independent shuffles: the i-th image of one domain is not tied to the i-th of the other,
    # and the pairs are new each epoch.
    offsets = [(a, b - 300) for a, b in pairs[1]]
    assert sum(a == b for a, b in offsets) < 10
    assert len(set(pairs[1]) & set(pairs[2])) < 10


def test_dynamic_binarization_is_fresh_each_epoch_and_repeats_with_the_seed(tmp_path):
    write_data(tmp_path, 300)

    def drawn(seed, epoch):
        batches = list(stream_batches(tmp_path, "train", "binary", 64, seed=seed, epoch=epoch))
        rows = torch.cat([b.extra["rows"] for b in batches])
        return torch.cat([b.images for b in batches])[rows.argsort()]
    one, again, other_epoch, other_seed = drawn(0, 1), drawn(0, 1), drawn(0, 2), drawn(1, 1)
    assert set(one.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(one, again) and not torch.equal(one, other_epoch) and not torch.equal(one, other_seed)
    # The draw is that of the whole-split read for the same (seed, epoch): whatever the batching.
    whole = draw_binary(read_split(tmp_path, "train", "binary"), seed=0, epoch=1)
    np.testing.assert_array_equal(whole.images, one.numpy())
    # It follows the intensities: Bernoulli means match pixel values.
    grayscale = read_split(tmp_path, "train", "grayscale").images
    assert abs(float(one.mean()) - float(grayscale.mean())) < 0.03   # 5 standard errors of 4,800 draws


def test_bernoulli_draw_depends_on_the_row_not_the_batch():
    p = np.random.default_rng(0).random((10, 1, 3, 3)).astype(np.float32)
    whole = bernoulli_draw(p, ("k", 1))
    np.testing.assert_array_equal(bernoulli_draw(p[4:7], ("k", 1), rows=[4, 5, 6]), whole[4:7])
    assert torch.equal(bernoulli_draw(torch.from_numpy(p), ("k", 1)), torch.from_numpy(whole))
    assert not np.array_equal(bernoulli_draw(p, ("k", 2)), whole)



def test_a_streamed_batch_is_to_batch_of_the_same_rows_of_the_read_split(tmp_path):
    """Reader and evaluation make Batches one way: every field equal, captions tokenized in the split's
    vocabulary (a word outside it is UNKNOWN = 1, a short caption padded with PAD = 0)."""
    rng = np.random.default_rng(0)
    captions = ["a red two", "a blue one", "a red zebra"] * 20
    vocabulary = ["<pad>", "<unk>", "a", "red", "blue", "two", "one"]
    meta = {"source": "synthetic", "image_shape": [1, 2, 2], "levels": 256, "binarization": "dynamic",
            "threshold": 0.5, "seed": 0, "class_names": ["a", "b"], "attribute_names": ["x", "y"],
            "domains": [{"name": "p"}, {"name": "q"}], "vocabulary": vocabulary, "caption_length": 4, "split": "test"}
    write_split(tmp_path / "test.parquet", rng.integers(0, 256, (60, 1, 2, 2), dtype=np.uint8),
                rng.integers(0, 2, 60), meta, (rng.random((60, 2)) < 0.5).astype(np.float32), captions,
                np.repeat([0, 1], 30), row_group=16)
    streamed = list(eval_batches(tmp_path, "test", "binary", 25))
    whole = read_split(tmp_path, "test", "binary")
    for start, batch in zip(range(0, 60, 25), streamed):
        made = to_batch(whole.select(slice(start, start + 25)))
        for name in ("images", "labels", "attributes", "caption_tokens", "domains"):
            assert torch.equal(getattr(batch, name), getattr(made, name)), name
        assert batch.captions == made.captions == captions[start:start + 25]
        assert batch.extra["rows"].tolist() == list(range(start, min(start + 25, 60)))
    assert streamed[0].caption_tokens[:3].tolist() == [[2, 3, 5, 0], [2, 4, 6, 0], [2, 3, 1, 0]]


def test_eval_batches_cover_every_row_in_order(tmp_path):
    write_data(tmp_path, 257, split="valid")
    rows = [r for rank in range(2) for b in eval_batches(tmp_path, "valid", "binary", 40, rank, 2)
            for r in b.extra["rows"].tolist()]
    assert rows == list(range(257))
    first = next(eval_batches(tmp_path, "valid", "binary", 40)).images
    assert torch.equal(first, next(eval_batches(tmp_path, "valid", "binary", 40)).images)
    np.testing.assert_array_equal(read_split(tmp_path, "valid", "binary").images[:40], first.numpy())


# Peak RSS from /proc's VmHWM: Linux carries getrusage's ru_maxrss over fork and exec, so a child
# of this (large) pytest process would report the parent's peak, not its own.
MEASURE = textwrap.dedent("""
    import re, sys
    from components.data.streaming import stream_batches
    seen = 0
    for batch in stream_batches(sys.argv[1], "train", "binary", 256, seed=0, epoch=1, shuffle_buffer=4096):
        seen += len(batch)
    status = open("/proc/self/status").read()
    print(seen, int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024)
""")


def test_streaming_memory_stays_flat_as_the_dataset_grows_tenfold(tmp_path):
    n = 20_000
    peaks = []
    for scale in (1, 10):
        folder = tmp_path / f"x{scale}"
        folder.mkdir()
        write_data(folder, n * scale, shape=(1, 28, 28), row_group=2048)
        result = subprocess.run([sys.executable, "-c", MEASURE, str(folder)], capture_output=True, text=True,
                                cwd=REPO, timeout=120)
        assert result.returncode == 0, result.stderr
        seen, peak = map(int, result.stdout.split())
        assert seen == n * scale
        peaks.append(peak)
    float32_bytes = 10 * n * 28 * 28 * 4    # the 10x dataset read whole as float32: 627 MB
    assert peaks[1] - peaks[0] < 0.05 * float32_bytes, peaks
