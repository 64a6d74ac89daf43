"""TF Addons' attention mechanisms (`tfa.seq2seq.BahdanauAttention`,
`LuongAttention`, `sequence_mask`) over the keras_rnn mechanisms.

The scores, the masked softmax and the context are the core's
(`keras_rnn.attention`); these classes add TF Addons' calling convention:
the memory is set on the mechanism (`memory=` or `setup_memory`) instead of
being passed to every step. The wrapper that uses them is in
`attention_wrapper.py`. Tests: `tests/keras_rnn/tfa/test_seq2seq.py`.
"""

import contextlib

import keras
from keras import ops

from keras_rnn import attention
from keras_rnn._keras_private import autocast
from keras_rnn._keras_private import unlocked
from keras_rnn.attention import AttentionMemory


def sequence_mask(lengths, maxlen):
    """`(batch, maxlen)` bool, True before each length (`tf.sequence_mask`)."""
    lengths = ops.convert_to_tensor(lengths, "int32")
    return ops.arange(maxlen, dtype="int32")[None, :] < lengths[:, None]


def _probability(probability_fn):
    if probability_fn in (None, "softmax"):
        return "softmax"
    if probability_fn == "hardmax":
        return lambda scores: ops.one_hot(
            ops.argmax(scores, axis=-1), ops.shape(scores)[-1], dtype="float32")
    if callable(probability_fn):
        return probability_fn
    raise ValueError(
        "probability_fn must be 'softmax', 'hardmax' or a callable; got "
        f"{probability_fn!r}.")


def _is_shape_list(shape):
    """True for `[query_shape, state_shape]`, False for one shape."""
    return (isinstance(shape, (list, tuple)) and len(shape) > 0
            and (isinstance(shape[0], (list, tuple)) or hasattr(shape[0], "as_list")))


def _to_compute_dtype(layer, x):
    """`x` as a tensor, floats cast to `layer.compute_dtype` (what Keras 2's
    `Layer.__call__` did to TF Addons' inputs under a mixed policy)."""
    x = ops.convert_to_tensor(x)
    if "float" in str(x.dtype):
        x = ops.cast(x, layer.compute_dtype)
    return x


def _keys_context(memory):
    """Where a mechanism computes the keys of `memory` (`setup_memory`).

    TensorFlow and JAX take a memory set outside the training step (`memory=`
    at construction, then `fit`) as a constant, keys included: the memory
    kernel gets no gradient from it. PyTorch records every operation, so its
    keys would hold a graph that the first training step's backward pass
    frees and the second fails on. There the keys of a memory that carries no
    gradient (data, not a model's output) are computed unrecorded; a memory
    set inside a model's call (TF Addons' NMT pattern) is recorded as before.
    """
    if keras.backend.backend() == "torch" and not memory.requires_grad:
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


class _TFAMechanism:
    """TF Addons' memory handling, mixed into a core mechanism.

    The weights are the core mechanism's (`query_kernel`, `memory_kernel`,
    `attention_v`, ...; TF Addons' `query_layer/kernel`, `memory_layer/kernel`
    are the same matrices), always in that order. `memory_kernel` is created
    when the memory width is known (`memory=`, `setup_memory`, or TF Addons'
    `build(memory_shape)`), the query-side weights when the query width is
    (the wrapper's `build`, `build([query_shape, state_shape])`, or the
    first call). Under a mixed policy (`mixed_float16`) the values, keys and
    alignments are in the layer's compute dtype, as in TF Addons.
    """

    def _init_memory(self, probability_fn, memory, memory_sequence_length):
        self.probability_fn = _probability(probability_fn)
        self.memory = None  # the core `AttentionMemory`
        if memory is not None:
            self.setup_memory(memory, memory_sequence_length)

    def setup_memory(self, memory, memory_sequence_length=None,
                     memory_mask=None):
        """Sets the memory to attend over (TF Addons' `setup_memory`).

        Args:
            memory: `(batch, max_time, depth)` encoder outputs.
            memory_sequence_length: optional `(batch,)` lengths.
            memory_mask: optional `(batch, max_time)` bool (instead of the
                lengths).
        """
        memory = _to_compute_dtype(self, memory)
        if memory_sequence_length is not None and memory_mask is not None:
            raise ValueError(
                "memory_sequence_length and memory_mask cannot be used at "
                "the same time.")
        if memory_sequence_length is not None:
            memory_mask = sequence_mask(memory_sequence_length,
                                        ops.shape(memory)[1])
        if memory_mask is not None:
            memory_mask = ops.cast(memory_mask, "bool")
            # TF Addons zeroes the padded memory before the keys.
            memory = memory * ops.cast(memory_mask[..., None], memory.dtype)
        self._ensure_memory(memory.shape[-1])
        # The keys in the compute dtype, like the query.
        with autocast(self), _keys_context(memory):
            self.memory = self.prepare(memory, memory_mask)

    @property
    def values(self):
        """The memory set by `setup_memory` (TF Addons' `values`)."""
        return None if self.memory is None else self.memory.values

    @property
    def keys(self):
        """The query-independent half of the score, computed once."""
        return None if self.memory is None else self.memory.keys

    @property
    def memory_initialized(self):
        return self.memory is not None

    @property
    def alignments_size(self):
        """The memory's `max_time`: an int, or a scalar tensor when it is
        unknown while traced (as TF Addons)."""
        return ops.shape(self.values)[1]

    @property
    def state_size(self):
        return self.alignments_size

    def initial_alignments(self, batch_size, dtype=None):
        """`(batch_size, max_time)` zeros in `dtype` (default the compute
        dtype)."""
        return ops.zeros((batch_size, ops.shape(self.values)[1]),
                         dtype or self.compute_dtype)

    def initial_state(self, batch_size, dtype=None):
        return self.initial_alignments(batch_size, dtype)

    def _check_memory(self):
        if self.memory is None:
            raise ValueError(
                f"{type(self).__name__}: no memory; pass `memory=` or call "
                "`setup_memory(memory)` first.")

    def build(self, input_shape, values_shape=None):
        """Creates the weights whose shapes `input_shape` tells.

        Three protocols: the core's `build(query_shape, values_shape)` (both
        sides); TF Addons' `build(memory_shape)` before the memory is set
        (the memory side), and `build([query_shape, state_shape])` (or
        `build(query_shape)`) once it is (the query side). Weights that
        exist are kept.
        """
        first = input_shape[0] if _is_shape_list(input_shape) else input_shape
        if values_shape is not None:
            self._ensure_memory(values_shape[-1])
            self._ensure_query(first[-1])
        elif self.memory is None:
            self._ensure_memory(first[-1])
        else:
            self._ensure_query(first[-1])

    def _ensure_memory(self, depth):
        with unlocked(self):  # after TF Addons' first `build`, see `build`
            self._build_memory(depth)

    def _ensure_query(self, depth):
        if getattr(self, "_query_built", False):
            return
        with unlocked(self):
            self._build_query(depth)
        self._query_built = True

    def attend(self, query):
        """`(context, alignments)` of `query` over the memory (TF Addons'
        probability_fn; softmax is the core's masked softmax); both in the
        compute dtype, as TF Addons'."""
        self._check_memory()
        query = _to_compute_dtype(self, query)
        if not (self.built and getattr(self, "_query_built", False)):
            # Through Keras's `build`, which records both shapes (a
            # reloaded mechanism builds both sides from them).
            self.build(tuple(query.shape), tuple(self.values.shape))
        memory = self.memory
        with autocast(self):
            if self.probability_fn == "softmax":
                context, alignments = attention._AttentionMechanism.call(
                    self, query, memory.values, values_mask=memory.mask,
                    keys=memory.keys)
            else:
                scores = ops.cast(self.score(query, memory.keys), "float32")
                if memory.mask is not None:
                    scores = ops.where(memory.mask, scores, float("-inf"))
                alignments = self.probability_fn(scores)
                context = ops.squeeze(ops.matmul(
                    ops.expand_dims(ops.cast(alignments, memory.values.dtype), 1),
                    memory.values), 1)
        return context, ops.cast(alignments, self.compute_dtype)

    def __call__(self, inputs, *args, setup_memory=False,
                 memory_sequence_length=None, memory_mask=None, **kwargs):
        """TF Addons' calls: `mechanism([query, state])` returns
        `(alignments, next_state)` (the next state is the alignments, as in
        TF Addons' Bahdanau and Luong); `mechanism(memory,
        setup_memory=True, memory_sequence_length=...)` sets the memory. Any
        other call is the core mechanism's `(query, values, values_mask=None,
        keys=None)`."""
        if setup_memory:
            memory_mask = kwargs.pop("mask", memory_mask)  # TF Addons' name
            if isinstance(inputs, (list, tuple)):  # [memory(, lengths)]
                inputs, *lengths = inputs
                memory_sequence_length = lengths[0] if lengths else None
            self.setup_memory(inputs, memory_sequence_length, memory_mask)
            return self.values
        if isinstance(inputs, (list, tuple)) and not args and not kwargs:
            query = inputs[0]  # [query, state] or [query, state, memory]
            _, alignments = self.attend(query)
            return alignments, alignments
        return super().__call__(inputs, *args, **kwargs)

    def _tfa_config(self, config):
        config = dict(config)
        if not isinstance(self.probability_fn, str) and self.probability_fn is not None:
            config["probability_fn"] = "hardmax"
        else:
            config["probability_fn"] = "softmax"
        return config


@keras.saving.register_keras_serializable(package="keras_rnn.seq2seq")
class BahdanauAttention(_TFAMechanism, attention.BahdanauAttention):
    """`tfa.seq2seq.BahdanauAttention`, over `keras_rnn.BahdanauAttention`.

    `e_j = v^T tanh(W s + U h_j)` (with `normalize=True`, the weight-normalized
    `v` and a bias, as TF Addons), `alpha = probability_fn(e)`.

    Args:
        units: width of the score's hidden layer.
        memory: optional `(batch, max_time, depth)` memory (else
            `setup_memory` later).
        memory_sequence_length: optional `(batch,)` memory lengths.
        normalize: weight normalization of `v` (Salimans & Kingma 2016).
        probability_fn: "softmax" (default), "hardmax" or a callable on the
            `(batch, max_time)` scores (padded positions are `-inf`).
        kernel_initializer: of all weights.
        dtype, name, **kwargs: layer arguments.

    Example:

    >>> mechanism = BahdanauAttention(8, memory=np.ones((2, 5, 6)))
    >>> alignments, _ = mechanism([np.ones((2, 4)), None])
    >>> alignments.shape
    (2, 5)
    """

    def __init__(self, units, memory=None, memory_sequence_length=None,
                 normalize=False, probability_fn="softmax",
                 kernel_initializer="glorot_uniform", dtype=None,
                 name="BahdanauAttention", **kwargs):
        super().__init__(units, normalize=normalize,
                         kernel_initializer=kernel_initializer, dtype=dtype,
                         name=name, **kwargs)
        self._init_memory(probability_fn, memory, memory_sequence_length)

    def _build_memory(self, depth):
        if getattr(self, "memory_kernel", None) is None:
            self.memory_kernel = self.add_weight(
                name="memory_kernel", shape=(depth, self.units),
                initializer=self.kernel_initializer)

    def _build_query(self, query_depth):
        if getattr(self, "query_kernel", None) is not None:
            return
        self.query_kernel = self.add_weight(
            name="query_kernel", shape=(query_depth, self.units),
            initializer=self.kernel_initializer)
        self.attention_v = self.add_weight(
            name="attention_v", shape=(self.units,),
            initializer=self.kernel_initializer)
        if self.normalize:
            self.attention_g = self.add_weight(
                name="attention_g", shape=(),
                initializer=keras.initializers.Constant((1.0 / self.units) ** 0.5))
            self.attention_b = self.add_weight(
                name="attention_b", shape=(self.units,), initializer="zeros")

    def get_config(self):
        return self._tfa_config(super().get_config())


@keras.saving.register_keras_serializable(package="keras_rnn.seq2seq")
class LuongAttention(_TFAMechanism, attention.LuongAttention):
    """`tfa.seq2seq.LuongAttention`: `keras_rnn.LuongAttention("general")`
    with TF Addons' constructor.

    `e_j = s^T (W h_j)` with `W` of shape `(depth, units)` — so the query
    (the wrapped cell's output) must have width `units`, as in TF Addons —
    times a learned scalar with `scale=True`.

    Args:
        units: width of the keys (= the query width).
        memory, memory_sequence_length, probability_fn: as
            `BahdanauAttention`.
        scale: multiply the scores by a learned scalar (initialized to 1).
        dtype, name, **kwargs: layer arguments.

    Example:

    >>> mechanism = LuongAttention(4, memory=np.ones((2, 5, 6)))
    >>> alignments, _ = mechanism([np.ones((2, 4)), None])
    >>> alignments.shape
    (2, 5)
    """

    def __init__(self, units, memory=None, memory_sequence_length=None,
                 scale=False, probability_fn="softmax", dtype=None,
                 name="LuongAttention", **kwargs):
        kwargs.pop("score_mode", None)  # a saved config carries it
        super().__init__("general", units=units, scale=scale, dtype=dtype,
                         name=name, **kwargs)
        self._init_memory(probability_fn, memory, memory_sequence_length)

    def _build_memory(self, depth):
        if getattr(self, "memory_kernel", None) is None:
            self.memory_kernel = self.add_weight(
                name="memory_kernel", shape=(depth, self.units),
                initializer=self.kernel_initializer)

    def _build_query(self, query_depth):
        if query_depth is not None and query_depth != self.units:
            raise ValueError(
                f"LuongAttention(units={self.units}) scores queries of width "
                f"{self.units} (TF Addons' rule); the query has width "
                f"{query_depth}. Give the wrapped cell {self.units} units.")
        if self.scale and getattr(self, "attention_g", None) is None:
            self.attention_g = self.add_weight(
                name="attention_g", shape=(), initializer="ones")

    def get_config(self):
        return self._tfa_config(super().get_config())
