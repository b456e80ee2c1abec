"""Groups concurrent requests into batches and runs them on worker threads.

Each worker thread owns one runner (a LiteRT interpreter is not thread-safe). A worker takes
the first waiting request, then keeps taking requests for up to ``timeout_s`` or until
``max_batch_size`` texts are gathered, runs them as one batch and resolves each request's
future with its own rows.
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
    __slots__ = ("texts", "future")

    def __init__(self, texts: Sequence[str]):
        self.texts = list(texts)
        self.future: concurrent.futures.Future = concurrent.futures.Future()


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
        # Build every runner before serving so a broken model fails at load, not per request.
        runners = [predictor.new_runner() for _ in range(workers)]
        self._threads = [threading.Thread(target=self._work, args=(i, r), daemon=True,
                                          name=f"infer-{i}") for i, r in enumerate(runners)]
        for t in self._threads:
            t.start()

    async def submit(self, texts: Sequence[str]) -> List:
        """Queues ``texts`` and waits for their predictions."""
        job = _Job(texts)
        self._queue.put(job)
        return await asyncio.wrap_future(job.future)

    def close(self) -> None:
        """Finishes queued jobs, then stops the workers."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join()

    def _gather(self, slot: int) -> Optional[List[_Job]]:
        first = self._carry[slot] or self._queue.get()
        self._carry[slot] = None
        if first is _STOP:
            return None
        jobs, rows = [first], len(first.texts)
        deadline = time.monotonic() + self.timeout_s
        while rows < self.max_batch_size:
            left = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP or rows + len(job.texts) > self.max_batch_size:
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
            texts = [t for j in jobs for t in j.texts]
            try:
                preds = []
                for start in range(0, len(texts), self.max_batch_size):
                    chunk = texts[start:start + self.max_batch_size]
                    t0 = time.perf_counter()
                    outputs = runner(self.predictor.encode(chunk))
                    preds.extend(self.predictor.postprocess(outputs))
                    self.on_batch(len(chunk), time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - the requests fail, the server stays up
                logging.error("inference failed: %s", type(e).__name__)
                for j in jobs:
                    j.future.set_exception(e)
                continue
            at = 0
            for j in jobs:
                j.future.set_result(preds[at:at + len(j.texts)])
                at += len(j.texts)
