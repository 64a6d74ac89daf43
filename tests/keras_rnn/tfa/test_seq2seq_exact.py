"""TF Addons' behaviours that its own test suite checks, against keras-rnn's
`keras_rnn.seq2seq` adapters: compiled decoding with unknown dimensions,
`sequence_loss`'s errors and one-hot targets, mixed precision, the decoders'
`output_size` / `output_dtype`, `gather_tree`'s parent check and the
mechanisms' two-phase `build`. Expected values are hand-worked, NumPy's, or
the ones TF Addons' tests state (TF Addons cannot be installed beside
TensorFlow 2.21)."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_rnn import seq2seq as tfa_s2s
from tests.conftest import BACKEND

B, S, D, U, V, E, K = 2, 5, 6, 4, 9, 3, 3
END = 2


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def compiled(fn):
    """`fn` compiled with every dimension unknown: `tf.function` with a
    `(None, None)` int32 signature per argument on TensorFlow (one trace for
    every shape), `jax.jit` on JAX."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        functions = {}

        def run(*args):
            if not functions:
                signature = [tf.TensorSpec((None, None), tf.int32)] * len(args)
                functions["f"] = tf.function(fn, input_signature=signature)
            return functions["f"](*args)
        return run
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    pytest.skip(f"no compiled check on {BACKEND}")


def parts(seed=0):
    """An encoder embedding, a Bahdanau `AttentionWrapper` over an LSTM
    cell, a target embedding and an output layer, with random weights."""
    keras.utils.set_random_seed(seed)
    source_embedding = keras.layers.Embedding(V, D)
    source_embedding.build((None,))
    target_embedding = keras.layers.Embedding(V, E)
    target_embedding.build((None,))
    dense = keras.layers.Dense(V)
    dense.build((None, 5))
    mechanism = tfa_s2s.BahdanauAttention(8)
    cell = tfa_s2s.AttentionWrapper(keras.layers.LSTMCell(U), mechanism,
                                    attention_layer_size=5)
    mechanism.setup_memory(np.zeros((1, S, D), "float32"))
    cell.build((None, E))
    rng = np.random.default_rng(seed)
    for layer in (source_embedding, target_embedding, dense, cell):
        for variable in layer.weights:
            variable.assign(rng.normal(scale=0.6, size=variable.shape))
    return source_embedding, target_embedding, dense, mechanism, cell


def lengths_of(ids):
    return ops.sum(ops.cast(ops.not_equal(ids, 0), "int32"), axis=1)


SOURCES = [np.array([[3, 4, 5, 6, 7], [3, 4, 5, 0, 0]], "int32"),
           np.array([[5, 6, 0], [7, 8, 4], [4, 0, 0]], "int32")]
TARGETS = [np.array([[1, 3, 4, 5], [1, 4, 5, 0]], "int32"),
           np.array([[1, 6, 0], [1, 3, 4], [1, 5, 0]], "int32")]


# ------------------------------------------ compiled, unknown dimensions


def test_training_sampler_decodes_compiled_with_unknown_time():
    source_embedding, target_embedding, dense, mechanism, cell = parts()

    def teacher_forced(source, target):
        mechanism.setup_memory(source_embedding(source),
                               memory_sequence_length=lengths_of(source))
        state = cell.get_initial_state(batch_size=ops.shape(target)[0],
                                       dtype="float32")
        decoder = tfa_s2s.BasicDecoder(cell, tfa_s2s.TrainingSampler(),
                                       output_layer=dense)
        outputs, _, lengths = decoder(target_embedding(target),
                                      initial_state=state,
                                      sequence_length=lengths_of(target))
        return outputs.rnn_output, outputs.sample_id, lengths

    eager = [teacher_forced(s, t) for s, t in zip(SOURCES, TARGETS)]
    run = compiled(teacher_forced)
    for (source, target), expected in zip(zip(SOURCES, TARGETS), eager):
        got = run(source, target)  # a second shape in the same trace
        np.testing.assert_allclose(_np(got[0]), _np(expected[0]), atol=1e-5)
        np.testing.assert_array_equal(_np(got[1]), _np(expected[1]))
        np.testing.assert_array_equal(_np(got[2]), _np(lengths_of(target)))
        assert got[0].shape[:2] == target.shape


def test_beam_search_decoder_decodes_compiled_with_unknown_dimensions():
    source_embedding, target_embedding, dense, mechanism, cell = parts(1)
    steps = 6

    def beam(source):
        batch = ops.shape(source)[0]
        mechanism.setup_memory(
            tfa_s2s.tile_batch(source_embedding(source), K),
            memory_sequence_length=tfa_s2s.tile_batch(lengths_of(source), K))
        state = cell.get_initial_state(batch_size=batch * K, dtype="float32")
        decoder = tfa_s2s.BeamSearchDecoder(cell, K, output_layer=dense,
                                            length_penalty_weight=0.6,
                                            maximum_iterations=steps)
        outputs, final_state, lengths = decoder(
            target_embedding.embeddings,
            start_tokens=ops.ones((batch,), "int32"), end_token=END,
            initial_state=state)
        return (outputs.predicted_ids,
                outputs.beam_search_decoder_output.scores[:, 0],
                final_state.log_probs, lengths)

    eager = [beam(source) for source in SOURCES]
    run = compiled(beam)
    for source, expected in zip(SOURCES, eager):
        ids, scores, log_probs, lengths = run(source)
        ids, want = _np(ids), _np(expected[0])  # (batch, time, beam)
        assert ids.shape[0] == source.shape[0]
        # Compiled, the outputs keep `maximum_iterations` steps (end
        # tokens past the longest hypothesis); eager cuts them.
        np.testing.assert_array_equal(ids[:, :want.shape[1]], want)
        assert (ids[:, want.shape[1]:] == END).all()
        np.testing.assert_allclose(_np(scores), _np(expected[1]), rtol=1e-5)
        np.testing.assert_allclose(_np(log_probs), _np(expected[2]), rtol=1e-5)
        np.testing.assert_array_equal(_np(lengths), _np(expected[3]))


# --------------------------------------------------------- sequence_loss


def tfa_loss_data():
    """TF Addons' `loss_test.get_test_data`: logits `i + 0.5` everywhere at
    step i (so a uniform softmax over 5 classes), targets `[0, 1, 2]`."""
    logits = np.broadcast_to(np.arange(3)[None, :, None] + 0.5,
                             (2, 3, 5)).astype("float32")
    targets = np.broadcast_to(np.arange(3), (2, 3)).astype("int32")
    return logits, targets, np.ones((2, 3), "float32")


@pytest.mark.parametrize("flags, message", [
    (dict(average_across_timesteps=False, average_across_batch=True,
          sum_over_timesteps=True, sum_over_batch=False),
     "average_across_batch and sum_over_timesteps cannot be set to True at "
     "same time because of ambiguous order."),
    (dict(average_across_timesteps=True, average_across_batch=False,
          sum_over_timesteps=False, sum_over_batch=True),
     "sum_over_batch and average_across_timesteps cannot be set to True at "
     "same time because of ambiguous order."),
])
def test_sequence_loss_refuses_the_ambiguous_orders(flags, message):
    logits, targets, weights = tfa_loss_data()
    with pytest.raises(ValueError) as raised:
        tfa_s2s.sequence_loss(logits, targets, weights, **flags)
    assert str(raised.value) == message
    with pytest.raises(ValueError, match="because of ambiguous order"):
        tfa_s2s.SequenceLoss(**flags)(targets, logits, weights)


def test_sequence_loss_takes_one_hot_and_probability_targets():
    logits, targets, weights = tfa_loss_data()
    one_hot = np.eye(5, dtype="float32")[targets]  # (2, 3, 5)
    # TF Addons' expected value: -log(1/5).
    loss = tfa_s2s.SequenceLoss()(one_hot, logits, weights)
    np.testing.assert_allclose(_np(loss), 1.60944, rtol=1e-5)
    np.testing.assert_allclose(_np(tfa_s2s.SequenceLoss()(one_hot, logits)),
                               1.60944, rtol=1e-5)
    # Probability targets: -sum_v q_v log softmax(logits)_v, against NumPy.
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 5)).astype("float32")
    q = rng.dirichlet(np.ones(5), size=(2, 3)).astype("float32")
    weights = np.array([[1.0, 1.0, 0.0], [1.0, 0.5, 1.0]], "float32")
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -(q * log_p).sum(-1) * weights
    got = tfa_s2s.sequence_loss(logits, q, weights,
                                average_across_timesteps=False)
    np.testing.assert_allclose(_np(got), ce.sum(0) / weights.sum(0), rtol=1e-5)
    # One-hot targets give the ids' loss.
    ids = rng.integers(0, 5, (2, 3))
    np.testing.assert_allclose(
        _np(tfa_s2s.sequence_loss(logits, np.eye(5)[ids], weights)),
        _np(tfa_s2s.sequence_loss(logits, ids, weights)), rtol=1e-6)
    with pytest.raises(ValueError, match="one-hot"):
        tfa_s2s.sequence_loss(logits, ids[..., None, None], weights)


# ------------------------------------------------------- mixed precision


@pytest.fixture
def mixed_float16():
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    yield
    keras.mixed_precision.set_dtype_policy(previous)


def _dtype(x):
    return keras.backend.standardize_dtype(x.dtype)


@pytest.mark.parametrize("kind", ["bahdanau", "luong"])
def test_mechanisms_and_wrapper_follow_the_compute_dtype(mixed_float16, kind):
    rng = np.random.default_rng(0)
    memory = rng.normal(size=(B, S, D)).astype("float32")
    lengths = np.array([5, 3])
    mechanism = (tfa_s2s.BahdanauAttention(8, memory, lengths)
                 if kind == "bahdanau" else tfa_s2s.LuongAttention(U, memory, lengths))
    alignments, state = mechanism([rng.normal(size=(B, U)).astype("float32"), None])
    # TF Addons: values, keys and alignments in the compute dtype.
    assert {_dtype(mechanism.values), _dtype(mechanism.keys),
            _dtype(alignments), _dtype(state)} == {"float16"}
    got = _np(alignments).astype("float32")
    np.testing.assert_allclose(got.sum(1), 1.0, atol=2e-3)
    assert not got[1, 3:].any()
    # TF Addons' `_test_with_attention` under mixed_float16: a BasicDecoder
    # run of the wrapper gives every float of the outputs and the final
    # state in the compute dtype.
    cell = tfa_s2s.AttentionWrapper(keras.layers.LSTMCell(U), mechanism,
                                    attention_layer_size=6,
                                    alignment_history=True)
    decoder = tfa_s2s.BasicDecoder(cell, tfa_s2s.TrainingSampler())
    outputs, final, _ = decoder(
        rng.normal(size=(B, 3, E)).astype("float32"),
        initial_state=cell.get_initial_state(batch_size=B),
        sequence_length=[3, 2])
    assert _dtype(outputs.rnn_output) == "float16"
    assert outputs.rnn_output.shape == (B, 3, 6)
    assert {_dtype(x) for x in (*final.cell_state, final.attention,
                                final.alignments, final.attention_state,
                                final.alignment_history)} == {"float16"}
    assert decoder.output_dtype.rnn_output == "float16"


# ------------------------------------------------ output_size/output_dtype


def test_decoders_output_size_and_dtype_match_their_outputs():
    source_embedding, target_embedding, dense, mechanism, cell = parts()
    source, target = SOURCES[0], TARGETS[0]
    mechanism.setup_memory(source_embedding(source))
    for output_layer, depth in ((dense, V), (None, 5)):
        decoder = tfa_s2s.BasicDecoder(cell, tfa_s2s.TrainingSampler(),
                                       output_layer=output_layer)
        assert decoder.output_size == tfa_s2s.BasicDecoderOutput((depth,), ())
        outputs, _, _ = decoder(
            target_embedding(target),
            initial_state=cell.get_initial_state(batch_size=B))
        for size, dtype, x in zip(decoder.output_size, decoder.output_dtype,
                                  outputs):
            assert tuple(x.shape[2:]) == size and _dtype(x) == dtype
    assert decoder.output_dtype == tfa_s2s.BasicDecoderOutput("float32", "int32")

    mechanism.setup_memory(tfa_s2s.tile_batch(source_embedding(source), K))
    decoder = tfa_s2s.BeamSearchDecoder(cell, K, output_layer=dense,
                                        maximum_iterations=4)
    assert decoder.output_size == tfa_s2s.BeamSearchDecoderOutput(
        (K,), (K,), (K,))
    outputs, _, _ = decoder(target_embedding.embeddings,
                            start_tokens=np.ones(B, "int32"), end_token=END,
                            initial_state=cell.get_initial_state(batch_size=B * K))
    per_step = outputs.beam_search_decoder_output  # (batch, time, beam)
    for size, dtype, x in zip(decoder.output_size, decoder.output_dtype,
                              per_step):
        assert tuple(x.shape[2:]) == size and _dtype(x) == dtype


# ------------------------------------------------------------ gather_tree


def _time_major(x):
    return np.transpose(np.asarray(x), (1, 0, 2)).astype("int32")


def test_gather_tree_raises_on_a_bad_parent_like_tf_addons():
    # TF Addons' `test_bad_parent_values_on_cpu`: (batch=1, time=4, beam=3),
    # a bad parent in beam 1 at time 1; the -1s at time 3 are past the length.
    step_ids = _time_major([[[1, 2, 3], [4, 5, 6], [7, 8, 9], [-1, -1, -1]]])
    parent_ids = _time_major([[[0, 0, 0], [0, -1, 1], [2, 1, 2], [-1, -1, -1]]])
    if BACKEND == "tensorflow":
        import tensorflow as tf

        error = tf.errors.InvalidArgumentError
    else:
        error = ValueError
    with pytest.raises(error, match=r"parent id -1 at \(time, batch, beam\) = \(1, 0, 1\)"):
        tfa_s2s.gather_tree(step_ids, parent_ids, [3], 10)
    with pytest.raises(error, match="parent id 3"):
        tfa_s2s.gather_tree(step_ids, np.where(parent_ids == -1, 3, parent_ids),
                            [3], 10)
    # The same ids past the length are no error (TF Addons' good example).
    good = _time_major([[[0, 0, 0], [0, 1, 1], [2, 1, 2], [-1, -1, -1]]])
    np.testing.assert_array_equal(
        _np(tfa_s2s.gather_tree(step_ids, good, [3], 10)),
        _time_major([[[2, 2, 2], [6, 5, 6], [7, 8, 9], [10, 10, 10]]]))


def test_gather_tree_batch_like_tf_addons():
    # TF Addons' `test_gather_tree_batch`, with lengths past max_time.
    rng = np.random.default_rng(0)
    lengths = [0, 1, 2, 4, 7, 8, 9, 10, 11, 0]
    end = 5
    step_ids = rng.integers(0, end + 1, (8, 10, 15))
    parent_ids = rng.integers(0, 14, (8, 10, 15))
    beams = _np(tfa_s2s.gather_tree(step_ids, parent_ids, lengths, end))
    assert beams.shape == (8, 10, 15)
    for b, length in enumerate(lengths):
        assert (beams[length:, b] == end).all()
    for b in range(10):
        for k in range(15):
            v = beams[:, b, k]
            if end in v:
                first = int(np.argmax(v == end))
                assert (v[:first] >= 0).all() and (v[first:] == end).all()


# ------------------------------------------- the mechanisms' two builds


@pytest.mark.parametrize("cls, options", [
    (tfa_s2s.BahdanauAttention, {}),
    (tfa_s2s.BahdanauAttention, {"normalize": True}),
    (tfa_s2s.LuongAttention, {"scale": True}),  # a query-side weight
])
def test_build_memory_then_setup_memory_then_build_query(cls, options):
    # TF Addons' `test_passing_memory_from_call`.
    rng = np.random.default_rng(0)
    memory = rng.normal(size=(B, S, D)).astype("float32")
    query = rng.normal(size=(B, 8)).astype("float32")
    state = rng.normal(size=(B, S)).astype("float32")
    attention = cls(8, memory, **options)
    weights_before_query = attention.get_weights()
    expected, _ = attention([query, state])
    all_weights = attention.get_weights()
    assert len(weights_before_query) == 1 < len(all_weights)

    again = cls.from_config(attention.get_config())
    again.build(memory.shape)
    again.set_weights(weights_before_query)
    again(memory, setup_memory=True)
    again.build([query.shape, state.shape])
    again.set_weights(all_weights)
    got, _ = again([query, state])
    np.testing.assert_allclose(_np(got), _np(expected), rtol=1e-6)
    # Keras's build config (as a `.keras` reload uses it) builds both sides.
    reloaded = cls.from_config(attention.get_config())
    reloaded.build_from_config(attention.get_build_config())
    reloaded.set_weights(all_weights)
    reloaded.setup_memory(memory)
    np.testing.assert_allclose(_np(reloaded([query, state])[0]), _np(expected),
                               rtol=1e-6)
    # Setting a memory again (another batch) makes no new weights.
    variables = list(again.weights)
    again(memory[:1], setup_memory=True)
    assert again([query[:1], state[:1]])[0].shape == (1, S)
    assert all(a is b for a, b in zip(variables, again.weights))
    assert len(variables) == len(again.weights)
