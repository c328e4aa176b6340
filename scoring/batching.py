"""Batch sizing and a batch runner that falls back to smaller batches and single samples."""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from scoring.exceptions import OutOfMemoryError, TimeLimitError

T = TypeVar("T")
R = TypeVar("R")

_OOM = (torch.cuda.OutOfMemoryError, MemoryError)


def free_device_memory(device: torch.device) -> None:
    """Collect garbage and hand cached CUDA blocks back."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def auto_batch_size(
    device: torch.device, bytes_per_sample: int, fixed: int | None, ceiling: int
) -> int:
    """``fixed`` if given; on a GPU as many samples as 60 % of free memory holds; 8 on CPU."""
    if fixed is not None:
        return max(1, min(fixed, ceiling))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(1, min(ceiling, int(free * 0.6) // max(1, bytes_per_sample)))
    return max(1, min(ceiling, 8))


def run_batches(
    items: Sequence[T],
    fn: Callable[[list[T]], list[R]],
    batch_size: int,
    device: torch.device,
    check_time: Callable[[], None],
) -> list[R | BaseException]:
    """Apply ``fn`` to batches of ``items``; one result (or the error that stopped it) per item.

    Out of memory halves the batch and retries; any other failure of a batch retries its items
    one at a time, so a failing sample only sinks itself. ``check_time`` runs before each batch
    and may raise TimeLimitError, which stops everything.
    """
    results: list[R | BaseException | None] = [None] * len(items)
    pending: list[list[int]] = [
        list(range(i, min(i + batch_size, len(items)))) for i in range(0, len(items), batch_size)
    ]
    while pending:
        idx = pending.pop(0)
        check_time()
        try:
            out = fn([items[i] for i in idx])
            if len(out) != len(idx):
                raise RuntimeError(f"adapter returned {len(out)} results for {len(idx)} inputs")
            for i, r in zip(idx, out, strict=True):
                results[i] = r
        except TimeLimitError:
            raise
        except _OOM as exc:
            free_device_memory(device)
            if len(idx) == 1:
                results[idx[0]] = OutOfMemoryError(f"out of memory on one sample: {exc}")
            else:
                half = math.ceil(len(idx) / 2)
                pending[:0] = [idx[:half], idx[half:]]
        except Exception as exc:  # an untrusted model may raise anything; it is recorded
            if len(idx) == 1:
                results[idx[0]] = exc
            else:
                pending[:0] = [[i] for i in idx]
    return [r if r is not None else RuntimeError("no result") for r in results]
