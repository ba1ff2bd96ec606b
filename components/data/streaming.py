"""Streaming a prepared split in batches: each worker reads only its shard, a row group at a time.

Memory is bounded by the shuffle buffer plus one row group, whatever the size
of the dataset. Rank r of w reads a contiguous run of N // w rows (the run
start rotates by N mod w rows each epoch, so the few rows left over are not
always the same ones): every rank yields the same number of batches, as the
training loop's collectives need. Row groups are visited in a seeded order and
rows leave through a seeded shuffle buffer; the seeds are (seed, epoch, rank).
Images become float32 in the model's pixel format batch by batch; dynamic
binarization draws from (seed, epoch, draw) and the image's row
(components/data/binarization.py): a fresh draw every epoch, the same draw
for the same seed, whichever rank reads the image.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pyarrow.parquet as pq

from components.data.batch import Batch, Split, to_batch
from components.data.binarization import binarize, draw_key
from components.data.prepared import binary_mode, columns_of, decode, spec_of, split_meta, split_path

Block = dict   # column name -> numpy array, all of one length; "row" = the row's index in the split


def _take(block: Block, index) -> Block:
    return {k: None if v is None else v[index] for k, v in block.items()}


def _concat(blocks: list[Block]) -> Block:
    return {k: None if blocks[0][k] is None else np.concatenate([b[k] for b in blocks]) for k in blocks[0]}


def shard_ranges(start: int, stop: int, rank: int, world: int, epoch: int = 0) -> list[tuple[int, int]]:
    """Rank `rank`'s rows of [start, stop): N // world contiguous rows, wrapping around the end."""
    n = stop - start
    size = n // world
    if size == 0:
        return []
    offset = (epoch * (n - size * world) + rank * size) % n
    if offset + size <= n:
        return [(start + offset, start + offset + size)]
    return [(start + offset, stop), (start, start + offset + size - n)]


class _Reader:
    """Row groups of one split file, read on demand and cut to row ranges."""

    def __init__(self, folder, split: str):
        self.meta = split_meta(folder, split)
        self.file = pq.ParquetFile(split_path(folder, split))
        sizes = [self.file.metadata.row_group(g).num_rows for g in range(self.file.num_row_groups)]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    @property
    def rows(self) -> int:
        return int(self.starts[-1])

    def pieces(self, ranges) -> list[tuple[int, int, int]]:
        """(row group, first row, end row) of every row group part inside `ranges`."""
        out = []
        for a, b in ranges:
            for g in range(len(self.starts) - 1):
                lo, hi = max(a, self.starts[g]), min(b, self.starts[g + 1])
                if lo < hi:
                    out.append((g, int(lo), int(hi)))
        return out

    def read(self, piece) -> Block:
        group, lo, hi = piece
        # One thread: a training worker owns about one CPU, and arrow's per-thread heaps would
        # otherwise keep a row group's worth of memory for every thread.
        table = self.file.read_row_group(group, use_threads=False).slice(lo - self.starts[group], hi - lo)
        block = columns_of(table, self.meta)
        block["row"] = np.arange(lo, hi, dtype=np.int64)
        return block

    def blocks(self, ranges, rng: np.random.Generator | None, shuffle_buffer: int) -> Iterator[Block]:
        """The rows of `ranges` once: in order without `rng`, else shuffled through a bounded buffer."""
        pieces = self.pieces(ranges)
        if rng is None:
            yield from (self.read(p) for p in pieces)
            return
        buffer = None
        for i in rng.permutation(len(pieces)):
            block = self.read(pieces[i])
            buffer = block if buffer is None else _concat([buffer, block])
            if len(buffer["row"]) > shuffle_buffer:
                order = rng.permutation(len(buffer["row"]))
                excess = len(order) - shuffle_buffer
                yield _take(buffer, order[:excess])
                buffer = _take(buffer, order[excess:])
        if buffer is not None:
            yield _take(buffer, rng.permutation(len(buffer["row"])))


def _rebatch(blocks: Iterator[Block], size: int) -> Iterator[Block]:
    """Blocks of exactly `size` rows (the last may be shorter)."""
    pending, count = [], 0
    for block in blocks:
        while len(block["row"]):
            take = min(size - count, len(block["row"]))
            pending.append(_take(block, slice(0, take)))
            block, count = _take(block, slice(take, None)), count + take
            if count == size:
                yield _concat(pending)
                pending, count = [], 0
    if pending:
        yield _concat(pending)


def _cycle(reader: _Reader, ranges, seed_key, shuffle_buffer: int) -> Iterator[Block]:
    """Endless passes over `ranges`, each pass with its own shuffle."""
    for rounds in range(1 << 62):
        yield from reader.blocks(ranges, np.random.default_rng([*seed_key, rounds]), shuffle_buffer)


def _to_batch(block: Block, meta: dict, pixels: str, key) -> Batch:
    """The block's rows in the pixel format `pixels` (dynamic binarization: the draw of `key` and each row)."""
    images = decode(block["image"], meta["levels"]).reshape(-1, *meta["image_shape"])
    if pixels == "binary" and meta["levels"] > 2:
        images = binarize(images, binary_mode(meta), meta.get("threshold", 0.5), key, block["row"])
    captions = None if block["caption"] is None else list(block["caption"])
    return to_batch(Split(images, block["label"], meta, block["attributes"], captions, block["domain"], block["row"]))


def _domain_rows(meta: dict, total: int) -> list[tuple[int, int]]:
    return [tuple(r) for r in meta.get("domain_rows") or [[0, total]]]


def stream_batches(folder, split: str, pixels: str, batch_size: int, rank: int = 0, world: int = 1,
                   seed: int = 0, epoch: int = 0, shuffle_buffer: int = 4096, per_domain: bool = False,
                   draw: int = 0) -> Iterator[Batch]:
    """One epoch of rank `rank`'s shard of `split`, shuffled, in batches of `batch_size`.

    `per_domain`: every batch holds batch_size // D images of each of the D
    domains, drawn from independent shuffles (so unpaired); the epoch lasts
    until the largest domain's shard is seen once, smaller domains starting a
    fresh shuffled pass when they run out. Every rank yields
    `count_batches(...)` batches."""
    reader = _Reader(folder, split)
    spec_of(reader.meta, pixels)   # an unknown pixel format fails here, before any row is read
    key = draw_key(seed, split, epoch, draw) if split == "train" else draw_key(reader.meta.get("seed", 0), split)
    if not per_domain:
        ranges = shard_ranges(0, reader.rows, rank, world, epoch)
        rng = np.random.default_rng([seed, epoch, rank])
        for block in _rebatch(reader.blocks(ranges, rng, shuffle_buffer), batch_size):
            yield _to_batch(block, reader.meta, pixels, key)
        return
    domains = _domain_rows(reader.meta, reader.rows)
    per, batches = _per_domain_sizes(domains, batch_size, world, split)
    streams = [_rebatch(_cycle(reader, shard_ranges(a, b, rank, world, epoch), (seed, epoch, rank, d),
                               shuffle_buffer), per)
               for d, (a, b) in enumerate(domains)]
    for _ in range(batches):
        yield _to_batch(_concat([next(s) for s in streams]), reader.meta, pixels, key)


def _per_domain_sizes(domains, batch_size: int, world: int, split: str) -> tuple[int, int]:
    """(images per domain in a batch, batches per epoch) of a per-domain stream."""
    if batch_size < len(domains):
        raise ValueError(f"batch_size {batch_size} is smaller than the {len(domains)} domains of a per-domain batch")
    per = batch_size // len(domains)
    shard = [(b - a) // world for a, b in domains]
    if min(shard) == 0:
        raise ValueError(f"split {split!r}: a domain has fewer rows than the {world} workers")
    return per, max(math.ceil(s / per) for s in shard)


def count_batches(folder, split: str, batch_size: int, world: int = 1, per_domain: bool = False) -> int:
    """Batches every rank gets from `stream_batches` in one epoch."""
    meta = split_meta(folder, split)
    total = int(meta.get("rows", pq.ParquetFile(split_path(folder, split)).metadata.num_rows))
    if per_domain:
        return _per_domain_sizes(_domain_rows(meta, total), batch_size, world, split)[1]
    return math.ceil((total // world) / batch_size)


def eval_batches(folder, split: str, pixels: str, batch_size: int, rank: int = 0, world: int = 1) -> Iterator[Batch]:
    """Every row of rank `rank`'s part of `split` once, in order, in batches: for validation and evaluation.

    Rank r gets rows [r N / w, (r+1) N / w): all rows are covered, and ranks'
    counts differ by at most one image, so sum per rank and all-reduce once at
    the end rather than per batch. Dynamic binarization uses the split's fixed draw."""
    reader = _Reader(folder, split)
    spec_of(reader.meta, pixels)   # an unknown pixel format fails here, before any row is read
    ranges = [(rank * reader.rows // world, (rank + 1) * reader.rows // world)]
    key = draw_key(reader.meta.get("seed", 0), split)
    for block in _rebatch(reader.blocks(ranges, None, 0), batch_size):
        yield _to_batch(block, reader.meta, pixels, key)
