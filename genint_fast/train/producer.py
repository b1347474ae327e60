"""Producers: make generated batches ahead of the classifier.

A producer calls `make(step) -> tuple of tensors` for step = start, start+1, ... A background
thread fills a bounded queue (back-pressure: it blocks when the queue is full); on CUDA the
thread works on a side stream and hands over an event the consumer's stream waits on. `get()`
returns the batch of the next step and the seconds the consumer waited for it. The batch of a
step is a pure function of (seed, step) (see `step_generator`), so resuming needs only the
step; the inline producer (no thread) makes the same batches sequentially.
"""
from __future__ import annotations

import hashlib
import queue
import threading
import time

import torch

__all__ = ["step_seed", "Producer"]


def step_seed(seed: int, step: int, stream: str = "") -> int:
    """A 63-bit seed derived from (seed, step, stream name) by a hash."""
    h = hashlib.blake2b(f"{int(seed)}:{int(step)}:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


class Producer:
    def __init__(self, make, start_step: int, *, threaded=True, queue_size=4, device="cpu"):
        self.make = make
        self.next_step = int(start_step)
        self.threaded = bool(threaded)
        self.device = torch.device(device)
        self.wait_total = 0.0
        self._error = None
        if self.threaded:
            self._q = queue.Queue(maxsize=int(queue_size))
            self._stop = threading.Event()
            self._side = (torch.cuda.Stream(device=self.device)
                          if self.device.type == "cuda" else None)
            self._thread = threading.Thread(target=self._run, args=(int(start_step),),
                                            name="genint-producer", daemon=True)
            self._thread.start()

    def _run(self, step):
        try:
            while not self._stop.is_set():
                if self._side is not None:
                    with torch.cuda.stream(self._side):
                        out = self.make(step)
                        event = torch.cuda.Event()
                        event.record(self._side)
                else:
                    out, event = self.make(step), None
                while not self._stop.is_set():
                    try:
                        self._q.put((step, out, event), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                step += 1
        except BaseException as exc:  # surfaced in get()
            self._error = exc
            self._q.put((None, None, None))

    def get(self):
        """(batch, wait_seconds) for the next step."""
        t0 = time.perf_counter()
        if not self.threaded:
            out = self.make(self.next_step)
            self.next_step += 1
            wait = time.perf_counter() - t0   # sequential: the classifier waits for all of it
            self.wait_total += wait
            return out, wait
        step, out, event = self._q.get()
        wait = time.perf_counter() - t0
        if self._error is not None:
            raise RuntimeError(f"the batch producer failed: {self._error}") from self._error
        assert step == self.next_step, (step, self.next_step)
        if event is not None:
            cur = torch.cuda.current_stream(self.device)
            cur.wait_event(event)
            for t in _tensors(out):
                if t.is_cuda:
                    t.record_stream(cur)
        self.next_step += 1
        self.wait_total += wait
        return out, wait

    def close(self):
        if self.threaded:
            self._stop.set()
            try:
                while True:
                    self._q.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=10)
