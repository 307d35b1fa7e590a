"""Batch orders: the official fixed-length batches (a seeded shuffle), and length-bucketed batches for the
speech-pooled classifier, whose batches cost their longest clip (`helpers.models.pooling`)."""

from __future__ import annotations

import torch

__all__ = ["shuffled_batches", "length_bucketed_batches", "BUCKET_BATCHES"]

BUCKET_BATCHES = 50  # batches per bucket: clips are sorted by length within a random pool of 50 batches' worth


def shuffled_batches(idx: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """`idx` in a seeded random order, cut into batches of `batch_size` (the last may be smaller)."""
    order = idx[torch.randperm(len(idx), generator=generator)]
    return list(order.split(batch_size))


def length_bucketed_batches(idx: torch.Tensor, lengths: torch.Tensor, batch_size: int,
                            generator: torch.Generator | None = None,
                            bucket_batches: int = BUCKET_BATCHES) -> list[torch.Tensor]:
    """Batches of `idx` whose clips have similar `lengths[idx]`, so a batch cut to its longest clip wastes little.

    With a `generator` (training): a seeded shuffle, cut into buckets of `bucket_batches` x `batch_size` clips,
    each sorted by length and cut into batches, the batches then shuffled, so each epoch mixes clips differently
    while every batch stays narrow in length. Without one (evaluation): all clips sorted by length. Every clip of
    `idx` appears exactly once.
    """
    if bucket_batches < 1 or batch_size < 1:
        raise ValueError(f"batch_size={batch_size}, bucket_batches={bucket_batches}: give positive numbers")
    if generator is None:
        return list(idx[torch.sort(lengths[idx], stable=True).indices].split(batch_size))
    order = idx[torch.randperm(len(idx), generator=generator)]
    batches = []
    for bucket in order.split(bucket_batches * batch_size):
        batches += list(bucket[torch.sort(lengths[bucket], stable=True).indices].split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
