"""Batch sizes: the default number of crops per forward, and buckets that keep shapes few.

PyTorch's CPU convolutions (oneDNN) build and cache a kernel for every input shape they meet,
up to 1,024 per cache. A scan whose batches took every size from 1 to 512 (MTCNN's candidate
boxes, the crops left over at the end of a chunk) kept filling those caches: its memory grew
by about 1 GB over 6,000 files. Zero-padding each batch to a bucket (powers of two up to 16,
then multiples of 16) leaves a few dozen shapes at most; each sample's result does not depend
on the others in an eval-mode network. Multiples of 16 rather than powers of two above that:
padding MTCNN's candidate boxes to the next power of two cost a quarter of a 250-px scan's
speed (55 against 72 files/s), multiples of 16 waste at most 15 rows.

PyTorch is imported inside `pad_batch` only, so the CLI can read `BATCH_SIZE` without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Crops per forward. Eager fp32 on a CPU is no faster per image at 32 than at 16 (38 img/s at
# 16, 29 at 64 for the default detector), and a forward of 32 crops held 330 MB of activations
# at once against 170 MB for 16: the difference between a scan under 1.5 GB and one over it.
BATCH_SIZE = 16


# Batches up to this size are padded to a power of two, larger ones to a multiple of it.
_BUCKET_STEP = 16


def bucket_size(n: int, largest: int) -> int:
    """`n` rounded up to its bucket, but never above `largest` (nor below `n`)."""
    if n < 1:
        raise ValueError(f"a batch holds at least one sample, got {n}")
    if n <= _BUCKET_STEP:
        size = 1 << (n - 1).bit_length()
    else:
        size = -(-n // _BUCKET_STEP) * _BUCKET_STEP
    return min(size, max(n, largest))


def pad_batch(batch: torch.Tensor, size: int) -> torch.Tensor:
    """`batch` followed by zero samples up to `size` rows, in the batch's memory format."""
    import torch

    if len(batch) >= size:
        return batch
    padding = batch.new_zeros((size - len(batch), *batch.shape[1:]))
    if batch.dim() == 4 and batch.is_contiguous(memory_format=torch.channels_last):
        padding = padding.contiguous(memory_format=torch.channels_last)
    return torch.cat([batch, padding])
