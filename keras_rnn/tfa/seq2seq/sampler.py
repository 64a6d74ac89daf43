"""TF Addons' samplers (`tfa.seq2seq.sampler`): how `BasicDecoder` turns a
step's outputs into sample ids and the next step's inputs.

Each follows TF Addons' `initialize` / `sample` / `next_inputs` protocol, in
`keras.ops`, with fixed shapes (the next input of a finished sequence is read
at a clamped time index instead of a dynamic one). Randomness comes from a
`keras.random.SeedGenerator`. Tests: `tests/keras_rnn/tfa/test_seq2seq.py`.
"""

import keras
from keras import ops


def _embedding_fn(embedding_fn, embedding):
    if embedding is not None:
        if callable(embedding):
            return embedding
        table = embedding
        return lambda ids: ops.take(table, ids, axis=0)
    if embedding_fn is None:
        raise ValueError("An embedding (a matrix or a callable) is required.")
    return embedding_fn


class Sampler:
    """The sampler protocol (TF Addons' `Sampler`).

    `initialize(inputs, **kwargs) -> (finished, first_inputs)`;
    `sample(time, outputs, state) -> sample_ids`;
    `next_inputs(time, outputs, state, sample_ids) -> (finished,
    next_inputs, state)`.
    """

    sample_ids_dtype = "int32"
    sample_ids_shape = ()  # one id per sequence and step
    # True when every step's input is known before decoding (teacher
    # forcing): `dynamic_decode` then runs a fixed number of steps with
    # a loop JAX can differentiate.
    trains = False


class TrainingSampler(Sampler):
    """Teacher forcing: the next input is the next ground-truth input.

    Args:
        time_major: inputs are `(time, batch, depth)`.

    `initialize(inputs, sequence_length=None, mask=None)`.
    """

    trains = True

    def __init__(self, time_major=False):
        self.time_major = bool(time_major)

    def initialize(self, inputs, sequence_length=None, mask=None):
        inputs = ops.convert_to_tensor(inputs)
        if self.time_major:
            inputs = ops.swapaxes(inputs, 0, 1)
        self.inputs = inputs  # (batch, time, depth)
        # `ops.shape`: an int where the length is static, a scalar tensor
        # where it is not (`tf.function` with an unknown time dimension).
        batch, time = ops.shape(inputs)[0], ops.shape(inputs)[1]
        self.max_time = time
        if sequence_length is not None and mask is not None:
            raise ValueError("Give sequence_length or mask, not both.")
        if mask is not None:
            sequence_length = ops.sum(ops.cast(mask, "int32"), axis=1)
        if sequence_length is None:
            sequence_length = ops.full((batch,), time, "int32")
        self.sequence_length = ops.convert_to_tensor(sequence_length, "int32")
        self.batch_size = batch
        finished = ops.equal(self.sequence_length, 0)
        return finished, inputs[:, 0]

    def sample(self, time, outputs, state):
        return ops.cast(ops.argmax(outputs, axis=-1), "int32")

    def _read(self, time):
        index = ops.minimum(ops.convert_to_tensor(time, "int32"),
                            self.max_time - 1)
        return ops.take(self.inputs, index, axis=1)

    def next_inputs(self, time, outputs, state, sample_ids):
        next_time = time + 1
        finished = next_time >= self.sequence_length
        return finished, self._read(next_time), state


class ScheduledEmbeddingTrainingSampler(TrainingSampler):
    """Scheduled sampling (Bengio et al. 2015): with probability
    `sampling_probability` a sequence's next input is the embedding of a
    token sampled from this step's logits instead of the ground truth.

    Args:
        sampling_probability: float in [0, 1].
        embedding_fn: callable ids -> embeddings (or give `embedding` to
            `initialize`).
        time_major: inputs are time-major.
        seed, scheduling_seed: seeds of the token and the choice draws.

    `initialize(inputs, sequence_length=None, mask=None, embedding=None)`.
    `sample` returns -1 where the ground truth is kept.
    """

    def __init__(self, sampling_probability, embedding_fn=None,
                 time_major=False, seed=None, scheduling_seed=None):
        super().__init__(time_major=time_major)
        self.sampling_probability = sampling_probability
        self.embedding_fn = embedding_fn
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.scheduling_seed_generator = keras.random.SeedGenerator(
            scheduling_seed)

    def initialize(self, inputs, sequence_length=None, mask=None,
                   embedding=None):
        self.embedding_fn = _embedding_fn(self.embedding_fn, embedding)
        return super().initialize(inputs, sequence_length, mask)

    def sample(self, time, outputs, state):
        batch = ops.shape(outputs)[0]
        select = keras.random.uniform(
            (batch,), seed=self.scheduling_seed_generator) < self.sampling_probability
        drawn = ops.cast(keras.random.categorical(
            ops.cast(outputs, "float32"), 1, seed=self.seed_generator)[:, 0], "int32")
        return ops.where(select, drawn, -1)

    def next_inputs(self, time, outputs, state, sample_ids):
        finished, base, state = super().next_inputs(time, outputs, state, sample_ids)
        sampled = self.embedding_fn(ops.maximum(sample_ids, 0))
        use = ops.expand_dims(sample_ids > -1, -1)
        return finished, ops.where(use, ops.cast(sampled, base.dtype), base), state


class GreedyEmbeddingSampler(Sampler):
    """Greedy decoding: the next input is the embedding of the argmax.

    Args:
        embedding_fn: callable ids -> embeddings, or None to take the
            embedding matrix (or callable) given to `initialize`.

    `initialize(embedding, start_tokens=None, end_token=None)`.
    """

    def __init__(self, embedding_fn=None):
        self.embedding_fn = embedding_fn

    def initialize(self, embedding, start_tokens=None, end_token=None):
        self.embedding_fn = _embedding_fn(self.embedding_fn, embedding)
        self.start_tokens = ops.convert_to_tensor(start_tokens, "int32")
        self.end_token = ops.convert_to_tensor(end_token, "int32")
        self.batch_size = ops.shape(self.start_tokens)[0]
        self.start_inputs = self.embedding_fn(self.start_tokens)
        return ops.zeros((self.batch_size,), "bool"), self.start_inputs

    def sample(self, time, outputs, state):
        return ops.cast(ops.argmax(outputs, axis=-1), "int32")

    def next_inputs(self, time, outputs, state, sample_ids):
        finished = ops.equal(sample_ids, self.end_token)
        next_inputs = ops.where(
            ops.all(finished), self.start_inputs,
            ops.cast(self.embedding_fn(sample_ids), self.start_inputs.dtype))
        return finished, next_inputs, state


class SampleEmbeddingSampler(GreedyEmbeddingSampler):
    """Like `GreedyEmbeddingSampler`, with the next token drawn from
    `softmax(logits / softmax_temperature)`.

    Args:
        embedding_fn: as `GreedyEmbeddingSampler`.
        softmax_temperature: float > 0, or None for 1.
        seed: seed of the draws.
    """

    def __init__(self, embedding_fn=None, softmax_temperature=None, seed=None):
        super().__init__(embedding_fn)
        self.softmax_temperature = softmax_temperature
        self.seed_generator = keras.random.SeedGenerator(seed)

    def sample(self, time, outputs, state):
        logits = ops.cast(outputs, "float32")
        if self.softmax_temperature is not None:
            logits = logits / self.softmax_temperature
        return ops.cast(keras.random.categorical(
            logits, 1, seed=self.seed_generator)[:, 0], "int32")
