"""Groups concurrent requests into batches and runs them on worker threads.

Each worker thread owns one runner (a LiteRT interpreter is not thread-safe). A worker takes
the first waiting request and every request already queued behind it (up to
``max_batch_size`` texts), then, only if ``timeout_s`` > 0, keeps waiting for more up to that
long; it runs them as one batch and resolves each request's future with its own rows. With
``timeout_s`` = 0 an idle server adds no wait at all, and under load the requests that queue
while the workers are busy form the next batches. While other workers wait idle, a worker
takes only its share of what is queued (queued / (idle workers + 1)) and leaves the rest to
them, so the workers run their batches side by side.

``workers`` = 0 runs the batches on the event loop's own thread instead: every request
parsed in one turn of the loop joins one batch, run right after them. For a model that takes
a fraction of a millisecond this is the fast path: a hand-off to a worker thread must win
Python's GIL back from the busy event loop, which waits for the interpreter's switch
interval (5 ms) whenever the loop does not yield it, and that wait dominated the latency.

Requests with different parameters (a language model's sampling settings) never share a
batch; a job with its own function (``run_alone``: a streamed generation) runs by itself.
"""
import asyncio
import concurrent.futures
import queue
import threading
import time
from typing import Callable, List, Optional, Sequence

from absl import logging

_STOP = object()


class _Job:
    __slots__ = ("texts", "params", "fn", "future")

    def __init__(self, texts: Sequence[str], params=None, fn=None, future=None):
        self.texts, self.params, self.fn = list(texts), params, fn
        # A thread's future, or the loop's own future when the batch runs on the loop.
        self.future = future or concurrent.futures.Future()


class Batcher:
    """``await batcher.submit(texts)`` -> that request's predictions, batched with others."""

    def __init__(self, predictor, max_batch_size: int, timeout_s: float, workers: int,
                 on_batch: Optional[Callable[[int, float], None]] = None):
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self.on_batch = on_batch or (lambda n, seconds: None)
        self._queue: "queue.Queue" = queue.Queue()
        self._carry: List[Optional[_Job]] = [None] * workers  # a job that did not fit a batch
        self._idle, self._idle_lock = 0, threading.Lock()  # workers waiting for a first job
        # Build every runner before serving so a broken model fails at load, not per request.
        runners = [predictor.new_runner() for _ in range(max(workers, 1))]
        self._inline = runners[0] if workers == 0 else None
        self._pending: List[_Job] = []  # inline: the jobs of this turn of the loop
        if workers == 0:
            runners = []
        self._threads = [threading.Thread(target=self._work, args=(i, r), daemon=True,
                                          name=f"infer-{i}") for i, r in enumerate(runners)]
        for t in self._threads:
            t.start()

    async def submit(self, texts: Sequence[str], params=None) -> List:
        """Queues ``texts`` and waits for their predictions."""
        if self._inline is not None:
            loop = asyncio.get_running_loop()
            # A language model's batch takes far longer than a turn of the loop: it runs on a
            # thread of the loop's executor (resolving a thread's future), not on the loop.
            off_loop = self.predictor.streams
            job = _Job(texts, params, future=None if off_loop else loop.create_future())
            if not self._pending:
                loop.call_soon(self._flush)
            self._pending.append(job)
            return await (asyncio.wrap_future(job.future) if off_loop else job.future)
        job = _Job(texts, params)
        self._queue.put(job)
        return await asyncio.wrap_future(job.future)

    async def run_alone(self, fn: Callable):
        """Runs ``fn(runner)`` on a worker thread, in no batch; returns its result (inline,
        on a thread of the loop's executor: a streamed generation must not block the loop;
        the runners of tasks that stream are thread-safe)."""
        if self._inline is not None:
            return await asyncio.to_thread(fn, self._inline)
        job = _Job([], fn=fn)
        self._queue.put(job)
        return await asyncio.wrap_future(job.future)

    def _flush(self) -> None:
        jobs, self._pending = self._pending, []
        run = self._run
        if self.predictor.streams:
            loop = asyncio.get_running_loop()
            run = lambda jobs, runner: loop.run_in_executor(None, self._run, jobs, runner)
        batch: List[_Job] = []
        for job in jobs:
            if batch and (job.params != batch[0].params or sum(
                    len(j.texts) for j in batch) + len(job.texts) > self.max_batch_size):
                run(batch, self._inline)
                batch = []
            batch.append(job)
        if batch:
            run(batch, self._inline)

    def close(self) -> None:
        """Finishes queued jobs, then stops the workers."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join()

    def _gather(self, slot: int) -> Optional[List[_Job]]:
        first = self._carry[slot]
        if first is None:
            with self._idle_lock:
                self._idle += 1
            first = self._queue.get()
            with self._idle_lock:
                self._idle -= 1
        self._carry[slot] = None
        if first is _STOP:
            return None
        jobs, rows = [first], len(first.texts)
        deadline = time.monotonic() + self.timeout_s
        while rows < self.max_batch_size and first.fn is None:
            # Leave idle workers their share: one worker hoarding every queued request (the
            # clients answered by one batch come back together) ran the batches of a 2-worker
            # server one after the other, each worker idle a third of the time (measured:
            # 107 requests/s with batching vs 149 without, the same 12 ms of model per text).
            idle, queued = self._idle, self._queue.qsize()
            if idle and queued and rows * (idle + 1) >= rows + queued:
                break
            left = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP or job.fn is not None or job.params != first.params \
                    or rows + len(job.texts) > self.max_batch_size:
                self._carry[slot] = job  # next batch starts with it
                break
            jobs.append(job)
            rows += len(job.texts)
        return jobs

    def _work(self, slot: int, runner) -> None:
        while True:
            jobs = self._gather(slot)
            if jobs is None:
                return
            if jobs[0].fn is not None:
                self._run_alone(jobs[0], runner)
            else:
                self._run(jobs, runner)

    def _run(self, jobs: List[_Job], runner) -> None:
        """Runs ``jobs`` as batches of at most max_batch_size texts and resolves them."""
        texts = [t for j in jobs for t in j.texts]
        try:
            preds = []
            for start in range(0, len(texts), self.max_batch_size):
                chunk = texts[start:start + self.max_batch_size]
                t0 = time.perf_counter()
                preds.extend(self.predictor.predict(runner, chunk, jobs[0].params))
                self.on_batch(len(chunk), time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - the requests fail, the server stays up
            logging.error("inference failed: %s", type(e).__name__)
            for j in jobs:
                if not j.future.done():  # a request whose client left is cancelled
                    j.future.set_exception(e)
            return
        at = 0
        for j in jobs:
            if not j.future.done():
                j.future.set_result(preds[at:at + len(j.texts)])
            at += len(j.texts)

    @staticmethod
    def _run_alone(job: _Job, runner) -> None:
        try:
            result = job.fn(runner)
        except Exception as e:  # noqa: BLE001 - the request fails, the server stays up
            logging.error("inference failed: %s", type(e).__name__)
            if not job.future.done():
                job.future.set_exception(e)
            return
        if not job.future.done():
            job.future.set_result(result)
