"""Ordered, bounded, threaded map: tiles are decoded ahead of the model, a fixed number at
a time, and come back in the order asked for."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    threads: int,
    depth: int,
    waited: Callable[[float], None] | None = None,
) -> Iterator[R]:
    """``map(fn, items)`` computed by ``threads`` threads at most ``depth`` items ahead of
    the consumer, so memory holds at most ``depth`` results. ``waited`` is told how long the
    consumer blocked on each result (time the pipeline was starved of input). An exception
    in ``fn`` is raised to the consumer at that item, and pending work is cancelled."""
    if threads < 1 or depth < 1:
        raise ValueError(f"threads and depth must be at least 1, not {threads} and {depth}")
    source = iter(items)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tile-read")
    pending: deque[Future[R]] = deque()
    try:
        for item in source:
            pending.append(pool.submit(fn, item))
            if len(pending) >= depth:
                break
        while pending:
            start = time.perf_counter()
            result = pending.popleft().result()
            if waited is not None:
                waited(time.perf_counter() - start)
            for item in source:
                pending.append(pool.submit(fn, item))
                break
            yield result
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
