"""Input pipeline: token-count buckets, shuffling, curriculum, `tf.data`.

Batches are planned in NumPy from the sentence lengths alone, so that the
batch a training step sees is a pure function of `(seed, step)`: a run that
resumes at step `k` gets exactly the batches an uninterrupted run gets from
`k` on, whatever the backend.

- **Bucketing.** A pair's length is `max(|x|, |y|)` rounded up to a multiple
  of `bucket_width`; a bucket of length `L` is cut into batches of
  `max_tokens // L` pairs, so every batch has at most `max_tokens` padded
  tokens on either side and a bucket has one shape (XLA compiles each shape
  once). The last batch of a bucket is filled with empty rows (source
  `[eos]`, target all padding) that carry no loss.
- **Shuffling.** Pairs are shuffled inside each bucket and batches across
  buckets, with a NumPy generator seeded by `(seed, pass)`.
- **Curriculum** (competence-based, Platanios et al. 2019, "Competence-based
  Curriculum Learning for Neural Machine Translation"): in pass `p <
  curriculum_passes` only the easiest fraction
  `c(p) = min(1, sqrt(p (1 - c0^2) / P + c0^2))` of the pairs (by length)
  is used; from pass `P` on, all of them.
- **Stream and epochs.** Passes follow one another in one stream of
  batches; an epoch is `steps_per_epoch` consecutive batches of it (by
  default, the batch count of one full pass). A pass's batch count depends
  only on which pairs it uses, not on the shuffle, and every pass from
  `curriculum_passes` on has `steps_per_pass()` batches, so the pass and
  position of any global step are arithmetic (`locate`): seeking builds
  one pass, however far the step.
"""

import math

import numpy as np

from keras_rnn.training.tokenizer import BOS_ID, EOS_ID, PAD_ID, add_eos


class Sequences:
    """Id sequences stored flat: row `i` is `ids[offsets[i]:offsets[i + 1]]`.

    `ids` and `offsets` may be NumPy arrays or memory maps (the token cache,
    `training.token_cache`): then the rows stay on disk and only the rows
    read are paged in, so memory does not grow with the corpus.

    Args:
        ids: `(T,)` int ids of all rows, concatenated.
        offsets: `(R + 1,)` int64 row boundaries into `ids`.
        index: `(N,)` the rows this view holds, in order (None: all).
    """

    def __init__(self, ids, offsets, index=None):
        self.ids, self.offsets, self.index = ids, offsets, index

    @classmethod
    def from_rows(cls, rows):
        """Sequences from a list of 1-D int sequences (in memory)."""
        lengths = np.array([len(r) for r in rows], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ids = (np.concatenate([np.asarray(r, np.int32) for r in rows]) if len(rows)
               else np.zeros(0, np.int32))
        return cls(ids, offsets)

    def lengths(self):
        """`(N,)` int64 row lengths."""
        lengths = np.diff(np.asarray(self.offsets, np.int64))
        return lengths if self.index is None else lengths[self.index]

    def subset(self, indices):
        """The rows `indices` of this view, without copying ids."""
        indices = np.asarray(indices, np.int64)
        return Sequences(self.ids, self.offsets,
                         indices if self.index is None else self.index[indices])

    def __len__(self):
        return len(self.offsets) - 1 if self.index is None else len(self.index)

    def __getitem__(self, item):
        """Row `item` as an int32 array, or a list of rows for a slice."""
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(len(self)))]
        i = int(item)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"row {item} out of range for {len(self)} rows")
        row = i if self.index is None else int(self.index[i])
        return np.asarray(self.ids[self.offsets[row]:self.offsets[row + 1]], np.int32)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class ParallelData:
    """Tokenized pairs: `source[i]` ends with EOS, `target[i]` ends with EOS.

    Args:
        source, target: `Sequences` (in memory or memory-mapped: the token
            cache), or lists of 1-D int arrays (ids, EOS included).
    """

    def __init__(self, source, target):
        if len(source) != len(target):
            raise ValueError(f"{len(source)} sources but {len(target)} targets.")
        self.source = source if isinstance(source, Sequences) else Sequences.from_rows(source)
        self.target = target if isinstance(target, Sequences) else Sequences.from_rows(target)
        self.source_lengths = self.source.lengths()
        self.target_lengths = self.target.lengths()

    @classmethod
    def encode(cls, source_tokenizer, target_tokenizer, source_lines, target_lines):
        """Tokenizes sentence lists and appends EOS to both sides."""
        return cls(add_eos(source_tokenizer.encode(source_lines)),
                   add_eos(target_tokenizer.encode(target_lines)))

    def __len__(self):
        return len(self.source)

    def subset(self, indices):
        """The pairs `indices`, sharing this data's ids."""
        return ParallelData(self.source.subset(indices), self.target.subset(indices))

    def lengths(self):
        """`(N,)` pair lengths: the longer side's, EOS included."""
        return np.maximum(self.source_lengths, self.target_lengths)

    def batch(self, indices, length=None):
        """Pads the pairs `indices` (-1 = an empty row) into model inputs.

        Returns:
            `({"source": (B, L), "target": (B, L)}, labels (B, L))` int32,
            the decoder input being `[bos, y_1, ..., y_{L-1}]` and the labels
            `[y_1, ..., y_L]` (EOS included), padded with `PAD_ID`.
        """
        indices = np.asarray(indices)
        real = indices[indices >= 0]
        if length is None:
            length = int(self.lengths()[real].max()) if len(real) else 1
        source = np.full((len(indices), length), PAD_ID, np.int32)
        labels = np.full((len(indices), length), PAD_ID, np.int32)
        for row, i in enumerate(indices):
            if i < 0:
                source[row, 0] = EOS_ID
                continue
            s, t = self.source[i], self.target[i]
            source[row, :len(s)] = s
            labels[row, :len(t)] = t
        decoder_input = np.concatenate(
            [np.full((len(indices), 1), BOS_ID, np.int32), labels[:, :-1]], axis=1
        )
        decoder_input[decoder_input == EOS_ID] = PAD_ID  # EOS is never an input
        return {"source": source, "target": decoder_input}, labels


def pad_rows(rows, pad_id=PAD_ID):
    """Id sequences -> one `(len(rows), longest)` int32 matrix, padded."""
    matrix = np.full((len(rows), max(len(r) for r in rows)), pad_id, np.int32)
    for i, row in enumerate(rows):
        matrix[i, :len(row)] = row
    return matrix


def competence(pass_index, passes, start):
    """Fraction of the data (easiest first) used in pass `pass_index`."""
    if passes <= 0 or pass_index >= passes:
        return 1.0
    return min(1.0, math.sqrt(pass_index * (1 - start ** 2) / passes + start ** 2))


class BatchPlan:
    """The stream of batches (arrays of pair indices, -1 = empty row).

    Args:
        lengths: `(N,)` pair lengths (`ParallelData.lengths()`).
        max_tokens: padded tokens per batch (longer side).
        bucket_width: lengths are rounded up to a multiple of this.
        seed: shuffling seed (None: no shuffling, batches in length order).
        curriculum_passes, curriculum_start: the curriculum (0 = off).
        batch_multiple: batch sizes are multiples of this (the number of
            data-parallel replicas).
    """

    def __init__(self, lengths, max_tokens, bucket_width=4, seed=0,
                 curriculum_passes=0, curriculum_start=0.2, batch_multiple=1):
        self.lengths = np.asarray(lengths, np.int64)
        if len(self.lengths) == 0:
            raise ValueError("No sentence pairs to batch.")
        self.bucket_width = int(bucket_width)
        self.padded = -(-self.lengths // self.bucket_width) * self.bucket_width
        longest = int(self.padded.max())
        if longest * batch_multiple > max_tokens:
            raise ValueError(
                f"max_tokens={max_tokens} cannot hold {batch_multiple} pair(s) of "
                f"the longest length {longest} (after rounding to bucket_width)."
            )
        self.max_tokens = int(max_tokens)
        self.batch_multiple = int(batch_multiple)
        self.seed = seed
        self.curriculum_passes = int(curriculum_passes)
        self.curriculum_start = float(curriculum_start)
        # Difficulty rank in [0, 1): shorter pairs first, ties by index.
        order = np.lexsort((np.arange(len(self.lengths)), self.lengths))
        self.rank = np.empty(len(order))
        self.rank[order] = np.arange(len(order)) / len(order)
        self._passes = {}
        self._pass_starts = None  # first step of passes 0..curriculum_passes

    def batch_size(self, length):
        size = self.max_tokens // int(length)
        return size - size % self.batch_multiple

    def eligible(self, pass_index):
        """Indices of the pairs used in pass `pass_index` (curriculum)."""
        c = competence(pass_index, self.curriculum_passes, self.curriculum_start)
        return np.flatnonzero(self.rank < c) if c < 1 else np.arange(len(self.lengths))

    def pass_length(self, pass_index):
        """Batches in pass `pass_index` (counted, not built)."""
        padded = self.padded[self.eligible(pass_index)]
        lengths, counts = np.unique(padded, return_counts=True)
        return sum(-(-int(n) // self.batch_size(length)) for length, n in zip(lengths, counts))

    def pass_start(self, pass_index):
        """The global step of the first batch of pass `pass_index`."""
        if self._pass_starts is None:  # the curriculum passes differ in length
            starts = [0]
            for p in range(self.curriculum_passes):
                starts.append(starts[-1] + self.pass_length(p))
            self._pass_starts = starts
        head = min(pass_index, self.curriculum_passes)
        return self._pass_starts[head] + (pass_index - head) * self.steps_per_pass()

    def locate(self, step):
        """`(pass_index, position)` of global step `step`, in O(1).

        A pass with no batches (a curriculum pass whose competence selects no
        pair) is skipped, as a replay of the stream skips it.
        """
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}.")
        self.pass_start(0)  # fills `_pass_starts`
        head = self.curriculum_passes
        if step >= self._pass_starts[head]:
            pass_index, position = divmod(step - self._pass_starts[head], self.steps_per_pass())
            return head + pass_index, position
        pass_index = int(np.searchsorted(self._pass_starts, step, side="right")) - 1
        return pass_index, step - self._pass_starts[pass_index]

    def batch_at(self, step):
        """`(length, indices)` of the batch at global step `step`."""
        pass_index, position = self.locate(step)
        return self.pass_batches(pass_index)[position]

    def pass_batches(self, pass_index):
        """The batches of one pass over the eligible pairs (cached)."""
        if pass_index in self._passes:
            return self._passes[pass_index]
        rng = None if self.seed is None else np.random.default_rng([self.seed, pass_index])
        indices = self.eligible(pass_index)
        batches = []
        for length in np.unique(self.padded[indices]):
            members = indices[self.padded[indices] == length]
            if rng is not None:
                members = rng.permutation(members)
            size = self.batch_size(length)
            for start in range(0, len(members), size):
                chunk = members[start:start + size]
                if len(chunk) < size:  # fill with empty rows: one shape per bucket
                    chunk = np.concatenate([chunk, np.full(size - len(chunk), -1)])
                batches.append((int(length), chunk))
        if rng is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if len(self._passes) > 4:
            self._passes.pop(min(self._passes))
        self._passes[pass_index] = batches
        return batches

    def steps_per_pass(self):
        """Batches in a full pass (no curriculum)."""
        if not hasattr(self, "_steps_per_pass"):
            lengths, counts = np.unique(self.padded, return_counts=True)
            self._steps_per_pass = sum(
                -(-int(n) // self.batch_size(length)) for length, n in zip(lengths, counts))
        return self._steps_per_pass

    def stream(self, start_step=0, stop_step=None):
        """Yields `(step, length, indices)` from global step `start_step`.

        Seeks with `locate`: only the passes that are yielded are built.
        """
        step = start_step
        pass_index, position = self.locate(start_step)
        if self.seed is None and stop_step is None:
            # An unshuffled plan is one pass (validation): to the end of this one.
            stop_step = self.pass_start(pass_index + 1)
        while stop_step is None or step < stop_step:
            for length, chunk in self.pass_batches(pass_index)[position:]:
                if stop_step is not None and step >= stop_step:
                    return
                yield step, length, chunk
                step += 1
            pass_index, position = pass_index + 1, 0


def numpy_batches(data, plan, start_step=0, stop_step=None, shard=None):
    """Padded NumPy batches `(inputs, labels)` of `plan.stream(...)`.

    `shard=(index, count)`: process `index`'s contiguous slice of every
    global batch, padded to the global batch's length
    (`training.multiprocess.local_rows`).
    """
    from keras_rnn.training.multiprocess import local_rows

    for _, length, chunk in plan.stream(start_step, stop_step):
        yield data.batch(local_rows(chunk, shard), length)


def tf_dataset(data, plan, start_step=0, stop_step=None, shard=None):
    """The same batches as a prefetched `tf.data.Dataset`."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, None), tf.int32)
    dataset = tf.data.Dataset.from_generator(
        lambda: numpy_batches(data, plan, start_step, stop_step, shard),
        output_signature=({"source": spec, "target": spec}, spec),
    )
    # A known length: Keras then neither warns "Your input ran out of data;
    # interrupting training" at the end of every validation pass nor guesses.
    if stop_step is not None:
        count = stop_step - start_step
    elif plan.seed is None:
        count = plan.steps_per_pass() - start_step
    else:
        count = tf.data.INFINITE_CARDINALITY
    return dataset.apply(tf.data.experimental.assert_cardinality(count)).prefetch(4)
