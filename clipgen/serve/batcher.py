"""Requests that arrive together share one sampler call per run.

One inference thread does all the model work, loading included (`setup`): two torch jobs side by
side only thrash the same cores, and loading on the main thread, sampling on this one, served a
single client 4× slower (two OpenMP teams on the same cores; BENCHMARKS.md, "Serving"). It takes the run whose oldest request has waited longest, waits a moment (`wait_s`) for
more requests to that run, and draws up to `max_rows` images for as many of its queued requests
as fit, in one `pipeline.run_requests` call: concurrent users share the KV-cache sampler instead
of queueing one by one. Each image draws from its own random stream, so sharing a batch does not
change what a request gets (BENCHMARKS.md, "serve", measures how often floating-point reduction
order still does).

A batch that fails is retried one request at a time, so a request the pipeline refuses (a
prompt its tokenizer cannot read) fails alone, with its own error. Each future's result is
(the request's result, seconds from queueing to done). Past `max_queue_rows` images waiting,
`submit` refuses with `QueueFull`, which says roughly when to retry.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Sequence

log = logging.getLogger("clipgen.serve")


class QueueFull(RuntimeError):
    def __init__(self, retry_after_s: int):
        super().__init__(f"the server is busy; retry in about {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass
class Job:
    request: object  # a PromptRequest
    rows: int
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.perf_counter)


# run name, the requests of one batch -> one result per request, in order
RunBatch = Callable[[str, Sequence[object]], list]


class Batcher:
    def __init__(self, run_batch: RunBatch, runs: Sequence[str], max_rows: int, max_queue_rows: int, wait_s: float = 0.01,
                 setup: Callable[[], None] | None = None):  # fmt: skip
        if max_rows < 1 or max_queue_rows < max_rows:
            raise ValueError(f"max_rows ({max_rows}) must be ≥ 1 and max_queue_rows ({max_queue_rows}) ≥ max_rows")
        self.run_batch, self.max_rows, self.max_queue_rows, self.wait_s = run_batch, max_rows, max_queue_rows, wait_s
        self.queues: dict[str, deque[Job]] = {name: deque() for name in runs}
        self.queued_rows = 0
        self.seconds_per_row = 0.1  # a running estimate, for Retry-After
        self.batches = 0  # sampler calls made, and the requests they served (for tests and the bench)
        self.batched_requests = 0
        self._lock = threading.Condition()
        self._closed = False
        self._setup = setup
        self._ready = threading.Event()
        self.setup_error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="clipgen-sampler", daemon=True)
        self._thread.start()

    @property
    def ready(self) -> bool:
        """Set up, and the inference thread alive."""
        return self._ready.is_set() and self.setup_error is None and self._thread.is_alive()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until `setup` has run on the inference thread; raise what it raised."""
        if not self._ready.wait(timeout):
            raise TimeoutError("the inference thread is still setting up")
        if self.setup_error is not None:
            raise self.setup_error

    def submit(self, jobs: Sequence[tuple[str, object, int]]) -> list[Future]:
        """Queue (run, request, rows) jobs together, or none of them when they do not all fit."""
        for run, _, n in jobs:  # what could never be drawn is the client's error, not a reason to retry
            if n > self.max_rows:
                raise ValueError(f"{run} would draw {n} images at once for this request; the server draws at most {self.max_rows}")
        rows = sum(n for _, _, n in jobs)
        if rows > self.max_queue_rows:
            raise ValueError(f"this request asks for {rows} images in all; the server queues at most {self.max_queue_rows}")
        with self._lock:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            if self.queued_rows + rows > self.max_queue_rows:
                wait = (self.queued_rows + rows) * self.seconds_per_row
                raise QueueFull(max(1, math.ceil(wait)))
            queued = [Job(request, n) for _, request, n in jobs]
            for (run, _, _), job in zip(jobs, queued):
                self.queues[run].append(job)
            self.queued_rows += rows
            self._lock.notify()
            return [job.future for job in queued]

    def close(self, timeout: float = 30.0) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(timeout)
        with self._lock:  # what was still waiting will not be drawn
            for queue in self.queues.values():
                while queue:
                    queue.popleft().future.cancel()

    # --- the inference thread ----------------------------------------------------------------------

    def _oldest_run(self) -> str | None:
        waiting = [(queue[0].queued_at, name) for name, queue in self.queues.items() if queue]
        return min(waiting)[1] if waiting else None

    def _take_batch(self) -> tuple[str, list[Job]] | None:
        """Wait for work, then give a moment for more of it; None when closing."""
        with self._lock:
            while not self._closed and self._oldest_run() is None:
                self._lock.wait()
            if self._closed:
                return None
            run = self._oldest_run()
            deadline = time.perf_counter() + self.wait_s
            while sum(job.rows for job in self.queues[run]) < self.max_rows and not self._closed:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._lock.wait(left)
            queue, batch, rows = self.queues[run], [], 0
            while queue and rows + queue[0].rows <= self.max_rows:
                job = queue.popleft()
                batch.append(job)
                rows += job.rows
            self.queued_rows -= rows
            return run, batch

    def _loop(self) -> None:
        try:
            if self._setup is not None:
                self._setup()
        except BaseException as err:  # the server must not start half loaded: wait_ready raises it
            self.setup_error = err
            return
        finally:
            self._ready.set()
        while (taken := self._take_batch()) is not None:
            run, batch = taken
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]
            if not live:
                continue
            start = time.perf_counter()
            try:
                self._draw(run, live)
            except BaseException as err:  # whatever happens, every request is answered and the thread lives on
                log.exception("the inference thread failed on %s", run)
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(err)
            rows = sum(job.rows for job in live)
            self.seconds_per_row = 0.8 * self.seconds_per_row + 0.2 * (time.perf_counter() - start) / rows

    def _draw(self, run: str, jobs: list[Job]) -> None:
        try:
            results = self.run_batch(run, [job.request for job in jobs])
        except Exception as err:  # nothing a batch raises may stop the server
            if len(jobs) > 1:
                log.warning("a batch of %d requests on %s failed (%s); drawing them one at a time", len(jobs), run, err)
                for job in jobs:
                    self._draw(run, [job])
                return
            if not isinstance(err, ValueError):
                log.exception("sampling on %s failed", run)
            jobs[0].future.set_exception(err)
            return
        self.batches += 1
        self.batched_requests += len(jobs)
        done = time.perf_counter()
        for job, result in zip(jobs, results, strict=True):
            job.future.set_result((result, done - job.queued_at))
