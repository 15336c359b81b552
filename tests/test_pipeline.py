"""The ordered producer pool: order kept, lookahead bounded, errors raised in place."""

from __future__ import annotations

import threading
import time

import pytest

from fakescope.inference.pipeline import ordered_prefetch


def slow_task(value: int, delay: float, log: list | None = None):
    def run() -> int:
        time.sleep(delay)
        if log is not None:
            log.append(value)
        return value

    return run


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_results_come_back_in_task_order(workers):
    # Later tasks finish first; the consumer still sees 0, 1, 2, ...
    tasks = [slow_task(i, 0.02 * (5 - i % 5)) for i in range(12)]
    assert list(ordered_prefetch(tasks, workers)) == list(range(12))


def test_lookahead_is_bounded_by_twice_the_workers():
    started = []
    lock = threading.Lock()

    def tasks():
        for i in range(100):

            def run(i=i) -> int:
                with lock:
                    started.append(i)
                return i

            yield run

    stream = ordered_prefetch(tasks(), workers=2)
    assert next(stream) == 0
    time.sleep(0.05)
    # After the first result, at most 2 x 2 tasks were ever submitted (and so started).
    assert len(started) <= 4
    stream.close()


def test_a_failing_task_raises_at_its_place_and_later_tasks_are_cancelled():
    ran = []

    def boom() -> int:
        raise RuntimeError("task 1 broke")

    tasks = [slow_task(0, 0.0, ran), boom] + [slow_task(i, 0.05, ran) for i in range(2, 40)]
    stream = ordered_prefetch(tasks, workers=1)
    assert next(stream) == 0
    with pytest.raises(RuntimeError, match="task 1 broke"):
        next(stream)
    # Only the tasks already in the short queue may have run, not the other 30-odd.
    assert len(ran) <= 4


def test_negative_workers_are_refused():
    with pytest.raises(ValueError, match="workers"):
        list(ordered_prefetch([], -1))
