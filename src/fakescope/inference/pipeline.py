"""A small producer pool: run tasks ahead in threads, hand their results back in order.

Decoding (Pillow, PyAV), resizing (OpenCV) and MTCNN (PyTorch) release the GIL for their
heavy parts, so threads overlap them with the model's forward in the consumer. The lookahead
is bounded: a long scan holds at most `2 * workers` finished or running tasks, never the
whole input.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def ordered_prefetch(tasks: Iterable[Callable[[], T]], workers: int) -> Iterator[T]:
    """Each task's result, in the order of `tasks`; up to 2 x `workers` tasks run ahead.

    workers 0 runs each task in the calling thread when its result is asked for. A task's
    exception is raised here, at its place in the order; tasks still queued are cancelled when
    the consumer stops early (an exception, or a generator closed before the end).
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        for task in tasks:
            yield task()
        return
    pending: deque[Future[T]] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fakescope-prefetch")
    try:
        for task in tasks:
            pending.append(pool.submit(task))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
