"""Server-side dynamic batching of translation requests.

Concurrent requests for one model version are split into sentences and
merged with other requests that share the same batch key (signature,
`beam_size`, `max_length`, `n_best`): a batch runs when it holds
`max_batch_size` sentences or `batch_timeout_ms` after its first sentence
arrived, whichever comes first. A request larger than the room left in the
open batch is split across batches and reassembled in order.

    batcher = Batcher(run, BatchingOptions(max_batch_size=32))
    request = batcher.submit(key, sentences, deadline=time.monotonic() + 5)
    outputs = request.result(timeout=5)   # {name: array with batch axis 0}
    batcher.stop()

Every output is cut back to each request's rows, and the padding axes of
the translator contract (`contract.PADDED_AXES`: subword pieces and attention
weights, padded to the longest sentence of the batch) are trimmed to the
request's own longest row, so a request gets the same arrays whether it
ran alone or merged (`trim_padding` is applied on the unbatched path too).

Back pressure: at most `max_enqueued_batches` batches (open or waiting) and
`max_queued_sentences` sentences wait; `submit` raises `QueueFullError`
beyond that. A request whose deadline passed before its batch runs is
dropped with `DeadlineExceededError`; one whose handler gave up
(`cancel()`) is skipped. If a merged batch fails with an
`InvalidArgumentError` (one bad sentence the server could not check, for
example too many subwords), each request of the batch is rerun alone so
only the bad one fails.

Chunks: a request of more sentences than its `chunk_size` (`submit`; the
servable derives it from `max_chunk_cost`) is sorted by length and split
into chunks of that many sentences, which go through the queue one at a
time: the next chunk is queued when the one before has run, behind
whatever arrived meanwhile. A small request sent while a large one runs
so waits about one chunk's compute, not the whole request, and two large
requests take turns. The rows are put back in order at the end, and a
chunk runs like any batch, so the translations are those of the unsplit
request.
"""

import collections
import dataclasses
import threading
import time

import numpy as np

from keras_rnn.serving.config import BatchingOptions  # noqa: F401 - re-exported
from keras_rnn.serving.contract import EXTENTS, PADDED_AXES


class QueueFullError(Exception):
    """The batch queue is full (gRPC RESOURCE_EXHAUSTED)."""


class DeadlineExceededError(Exception):
    """The request's deadline passed before its batch ran (DEADLINE_EXCEEDED)."""


class BatcherStoppedError(Exception):
    """The batcher was stopped before the request ran (UNAVAILABLE)."""


def _pad_value(array):
    return b"" if array.dtype == object else np.zeros((), array.dtype)


def trim_padding(outputs):
    """Cuts the padding axes of `PADDED_AXES` to the rows' longest extent.

    Args:
        outputs: dict of output name -> NumPy array (batch axis 0).

    Returns:
        A new dict; outputs not named in `PADDED_AXES` are unchanged.
    """
    extents = {}
    for extent, (name, axis) in EXTENTS.items():
        if name in outputs:
            pieces = outputs[name]
            other = tuple(a for a in range(pieces.ndim) if a != axis)
            used = np.nonzero(np.any(pieces != b"", axis=other))[0]
            extents[extent] = int(used[-1]) + 1 if used.size else 0
    trimmed = dict(outputs)
    for name, axes in PADDED_AXES.items():
        if name not in outputs:
            continue
        index = [slice(None)] * outputs[name].ndim
        for axis, extent in axes.items():
            if extent in extents and axis < len(index):
                index[axis] = slice(0, extents[extent])
        trimmed[name] = outputs[name][tuple(index)]
    return trimmed


def concat_parts(parts):
    """Concatenates output dicts along axis 0, padding the other axes.

    Args:
        parts: list of dicts of output name -> NumPy array, in row order.

    Returns:
        One dict of output name -> array.
    """
    if len(parts) == 1:
        return parts[0]
    merged = {}
    for name in parts[0]:
        arrays = [part[name] for part in parts]
        shape = np.max([a.shape for a in arrays], axis=0)
        padded = []
        for array in arrays:
            widths = [(0, 0)] + [(0, int(s - n)) for s, n in zip(shape[1:], array.shape[1:])]
            if any(w[1] for w in widths):
                array = np.pad(array, widths, constant_values=_pad_value(array))
            padded.append(array)
        merged[name] = np.concatenate(padded, axis=0)
    return merged


class PendingRequest:
    """One submitted request: its sentences, deadline and (future) result."""

    def __init__(self, size, deadline, order=None):
        self.size = size
        self.deadline = deadline
        self.order = order  # of a chunked request: its rows sorted by length
        self._parts = {}
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._result = None
        self._error = None

    @property
    def done(self):
        return self._done.is_set()

    def expired(self, now=None):
        return self.deadline is not None and (now or time.monotonic()) >= self.deadline

    def set_part(self, offset, outputs):
        with self._lock:
            if self._done.is_set():
                return
            self._parts[offset] = outputs
            if sum(len(next(iter(p.values()))) for p in self._parts.values()) >= self.size:
                self._result = concat_parts([self._parts[k] for k in sorted(self._parts)])
                if self.order is not None:  # back to the order of the request
                    inverse = np.argsort(self.order, kind="stable")
                    self._result = {name: value[inverse] for name, value in self._result.items()}
                self._parts = {}
                self._done.set()

    def fail(self, error):
        with self._lock:
            if not self._done.is_set():
                self._error = error
                self._parts = {}
                self._done.set()

    def cancel(self):
        """Gives up on the request (its handler stopped waiting)."""
        self.fail(DeadlineExceededError("the request was cancelled"))

    def result(self, timeout=None):
        """Waits for the outputs.

        Args:
            timeout: seconds to wait; None waits forever.

        Returns:
            dict of output name -> NumPy array, one row per sentence.

        Raises:
            DeadlineExceededError: `timeout` passed first (the request is
                cancelled) or the batcher dropped it as expired.
            Exception: whatever running the batch raised.
        """
        if not self._done.wait(timeout):
            self.cancel()
        if self._error is not None:
            raise self._error
        return self._result


@dataclasses.dataclass
class _Chunks:
    """What is left to queue of a chunked request."""

    key: object
    request: PendingRequest
    sentences: list  # sorted by length
    size: int  # sentences per chunk
    offset: int = 0  # of the next chunk


@dataclasses.dataclass
class _Item:
    request: PendingRequest
    offset: int
    sentences: list
    chunks: _Chunks = None


@dataclasses.dataclass
class _Batch:
    key: tuple
    opened: float
    items: list = dataclasses.field(default_factory=list)
    size: int = 0


class Batcher:
    """Merges concurrent requests into batches and runs them on threads.

    Args:
        run: `run(key, sentences)` -> dict of output name -> array with one
            row per sentence; `sentences` is a NumPy object array of bytes.
        options: `BatchingOptions`.
        on_batch: optional `on_batch(key, size, seconds)` called after each
            batch ran (metrics).
        on_queue: optional `on_queue(queued_sentences)` called when the
            queue depth changes (metrics).
        name: thread name prefix.
    """

    def __init__(self, run, options, on_batch=None, on_queue=None, name="batcher"):
        self._run = run
        self.options = options
        self._on_batch = on_batch
        self._on_queue = on_queue
        self._cond = threading.Condition()
        self._open = {}  # key -> _Batch still accepting sentences
        self._ready = collections.deque()  # full or timed-out batches
        self._queued = 0  # sentences in open and ready batches
        self._reserved = 0  # sentences of chunked requests not queued yet
        self._running = 0  # batches being run
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def queued_sentences(self):
        """Sentences waiting: in batches, and in chunks not queued yet."""
        return self._queued + self._reserved

    def submit(self, key, sentences, deadline=None, chunk_size=None):
        """Queues a request's sentences under a batch key.

        Args:
            key: hashable; only requests with equal keys share a batch.
            sentences: list of bytes.
            deadline: `time.monotonic()` time after which the request is
                dropped, or None.
            chunk_size: most sentences of the request queued at a time (at
                most `max_batch_size`); a larger request runs in chunks,
                one after the other (see the module docstring). None: all
                at once.

        Returns:
            A `PendingRequest`.

        Raises:
            QueueFullError: the queue has no room for the sentences.
            BatcherStoppedError: the batcher is stopping.
        """
        options = self.options
        chunk_size = min(chunk_size or len(sentences), options.max_batch_size)
        chunks = None
        if len(sentences) > chunk_size:
            order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
            request = PendingRequest(len(sentences), deadline, order)
            chunks = _Chunks(key, request, [sentences[i] for i in order], chunk_size)
        else:
            request = PendingRequest(len(sentences), deadline)
        with self._cond:
            if self._stopping:
                raise BatcherStoppedError("the model version is being unloaded")
            if self.queued_sentences + len(sentences) > options.max_queued_sentences:
                raise QueueFullError(
                    f"the batch queue is full ({self.queued_sentences} sentences waiting, "
                    f"max_queued_sentences={options.max_queued_sentences})")
            batch = self._open.get(key)
            room = options.max_batch_size - batch.size if batch else 0
            new_batches = (1 if chunks is not None else
                           -(-max(0, len(sentences) - room) // options.max_batch_size))
            if len(self._open) + len(self._ready) + new_batches > options.max_enqueued_batches:
                raise QueueFullError(
                    f"the batch queue is full ({len(self._open) + len(self._ready)} batches "
                    f"waiting, max_enqueued_batches={options.max_enqueued_batches})")
            if chunks is not None:
                self._reserved += len(sentences)
                self._queue_chunk(chunks)
            offset = len(sentences) if chunks is not None else 0
            while offset < len(sentences):
                batch = self._open.get(key)
                if batch is None:
                    batch = self._open[key] = _Batch(key, time.monotonic())
                take = min(options.max_batch_size - batch.size, len(sentences) - offset)
                batch.items.append(_Item(request, offset, sentences[offset:offset + take]))
                batch.size += take
                offset += take
                if batch.size >= options.max_batch_size:
                    self._ready.append(self._open.pop(key))
                self._queued += take
            self._cond.notify_all()
        self._report_queue()
        return request

    def stop(self, timeout=None):
        """Runs what is queued, then stops the threads.

        Args:
            timeout: seconds to wait for each thread.
        """
        with self._cond:
            self._stopping = True
            self._ready.extend(self._open.values())
            self._open.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    # ------------------------------------------------------------ internals

    def _report_queue(self):
        if self._on_queue is not None:
            self._on_queue(self.queued_sentences)

    def _next_batch(self):
        """Blocks until a batch is due; None when stopped and drained."""
        timeout_s = self.options.batch_timeout_ms / 1000
        with self._cond:
            while True:
                now = time.monotonic()
                for key, batch in list(self._open.items()):
                    if self._stopping or now - batch.opened >= timeout_s:
                        self._ready.append(self._open.pop(key))
                if self._ready:  # the oldest first: a chunk queued later waits its turn
                    batch = min(self._ready, key=lambda b: b.opened)
                    self._ready.remove(batch)
                    self._queued -= batch.size
                    self._running += 1
                    return batch
                if self._stopping:
                    return None
                wait = None
                if self._open:
                    oldest = min(b.opened for b in self._open.values())
                    wait = max(0.0, oldest + timeout_s - now)
                self._cond.wait(wait)

    def _loop(self):
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._report_queue()
            try:
                self._execute(batch)
            finally:
                with self._cond:
                    self._running -= 1
                    for item in batch.items:
                        if item.chunks is not None:
                            self._queue_chunk(item.chunks)
                    self._cond.notify_all()
                self._report_queue()

    def _queue_chunk(self, chunks):
        """Queues the next chunk of a chunked request, as a batch due now
        (with the sentences of its key already waiting); once the request
        is done (answered, failed or cancelled), gives back the room the
        rest held. Called with the lock held."""
        request, left = chunks.request, len(chunks.sentences) - chunks.offset
        if request.done or not left:
            self._reserved -= left
            chunks.offset = len(chunks.sentences)
            return
        take = min(chunks.size, left)
        batch = self._open.pop(chunks.key, None)
        if batch is not None and batch.size + take > self.options.max_batch_size:
            self._ready.append(batch)
            batch = None
        if batch is None:
            batch = _Batch(chunks.key, time.monotonic())
        batch.items.append(_Item(request, chunks.offset,
                                 chunks.sentences[chunks.offset:chunks.offset + take], chunks))
        batch.size += take
        self._ready.append(batch)
        chunks.offset += take
        self._reserved -= take
        self._queued += take

    def _execute(self, batch):
        now = time.monotonic()
        items = []
        for item in batch.items:
            if item.request.done:
                continue  # cancelled, or another part failed
            if item.request.expired(now):
                item.request.fail(DeadlineExceededError(
                    "the deadline passed while the request waited for its batch"))
                continue
            items.append(item)
        if not items:
            return
        sentences = [s for item in items for s in item.sentences]
        start = time.perf_counter()
        try:
            outputs = self._run(batch.key, np.array(sentences, dtype=object))
        except Exception as error:  # noqa: BLE001 - handed to the waiting requests
            if len({id(item.request) for item in items}) > 1 and _is_invalid_argument(error):
                for item in items:  # isolate the request with the bad sentence
                    self._execute(_Batch(batch.key, batch.opened, [item], len(item.sentences)))
                return
            for item in items:
                item.request.fail(error)
            return
        finally:
            if self._on_batch is not None:
                self._on_batch(batch.key, len(sentences), time.perf_counter() - start)
        row = 0
        for item in items:
            rows = {name: value[row:row + len(item.sentences)] for name, value in outputs.items()}
            row += len(item.sentences)
            item.request.set_part(item.offset, trim_padding(rows))


def _is_invalid_argument(error):
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover - the server always has TensorFlow
        return False
    return isinstance(error, tf.errors.InvalidArgumentError)
