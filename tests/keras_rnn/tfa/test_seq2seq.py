"""TF Addons' seq2seq API (`keras_rnn.seq2seq`) against the core it wraps,
and against hand-worked examples."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_rnn
from keras_rnn import decoding
from keras_rnn import seq2seq as tfa_s2s
from keras_rnn.attention import AttentionMemory
from tests.conftest import BACKEND

B, S, D, U, V, E, K = 2, 5, 6, 4, 9, 3, 3
LENGTHS = np.array([5, 3])
END = 2


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def memory(seed=0):
    return np.random.default_rng(seed).normal(size=(B, S, D)).astype("float32")


def randomize(*layers, seed=0, scale=0.6):
    rng = np.random.default_rng(seed)
    for layer in layers:
        for variable in layer.weights:
            variable.assign(rng.normal(scale=scale, size=variable.shape))


# ------------------------------------------------------------ hand-worked


def test_tile_batch_repeats_each_entry_of_a_nest():
    got = tfa_s2s.tile_batch([np.array([[1, 2], [3, 4]]), np.array([7, 8])], 3)
    np.testing.assert_array_equal(
        _np(got[0]), [[1, 2], [1, 2], [1, 2], [3, 4], [3, 4], [3, 4]])
    np.testing.assert_array_equal(_np(got[1]), [7, 7, 7, 8, 8, 8])


def test_gather_tree_on_a_hand_worked_example():
    # (max_time=4, batch=1, beam=3), end token 10, length 3. Beam 0 ends in
    # 7 at t=2, whose parent is beam 2 (6 at t=1), whose parent is beam 1
    # (2 at t=0): [2, 6, 7]; then the end token past the length.
    step_ids = np.array([[[1, 2, 3]], [[4, 5, 6]], [[7, 8, 9]], [[-1, -1, -1]]])
    parent_ids = np.array([[[0, 0, 0]], [[0, 1, 1]], [[2, 1, 2]], [[-1, -1, -1]]])
    got = tfa_s2s.gather_tree(step_ids, parent_ids, [3], 10)
    expected = np.array([[[2, 2, 2]], [[6, 5, 6]], [[7, 8, 9]], [[10, 10, 10]]])
    np.testing.assert_array_equal(_np(got), expected)


def test_gather_tree_writes_the_end_token_after_the_first_end_token():
    step_ids = np.array([[[1, 2]], [[10, 5]], [[7, 8]]])  # (T=3, B=1, K=2)
    parent_ids = np.array([[[0, 0]], [[0, 1]], [[0, 1]]])
    got = _np(tfa_s2s.gather_tree(step_ids, parent_ids, [3], 10))
    np.testing.assert_array_equal(got[:, 0, 0], [1, 10, 10])
    np.testing.assert_array_equal(got[:, 0, 1], [2, 5, 8])


def test_sequence_loss_matches_numpy_for_every_reduction():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 5)).astype("float32")
    targets = rng.integers(0, 5, (2, 3))
    weights = np.array([[1.0, 1.0, 0.0], [1.0, 0.5, 1.0]], "float32")
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0] * weights
    nonzero = (weights != 0).astype("float32")
    cases = {
        (True, True, False, False): ce.sum() / weights.sum(),
        (False, False, True, True): ce.sum() / nonzero.sum(),
        (True, False, False, False): ce.sum(1) / weights.sum(1),
        (False, True, False, False): ce.sum(0) / weights.sum(0),
        (False, False, True, False): ce.sum(1) / nonzero.sum(1),
        (False, False, False, True): ce.sum(0) / nonzero.sum(0),
        (False, False, False, False): ce,
    }
    for (at, ab, st, sb), expected in cases.items():
        got = tfa_s2s.sequence_loss(
            logits, targets, weights, average_across_timesteps=at,
            average_across_batch=ab, sum_over_timesteps=st, sum_over_batch=sb)
        np.testing.assert_allclose(_np(got), expected, rtol=1e-5, atol=1e-6)
    loss = tfa_s2s.SequenceLoss()(targets, logits, weights)
    np.testing.assert_allclose(_np(loss), ce.sum() / nonzero.sum(), rtol=1e-5)
    with pytest.raises(ValueError, match="average_across_timesteps"):
        tfa_s2s.sequence_loss(logits, targets, weights, sum_over_timesteps=True)


# ------------------------------------------------------- mechanisms = core


@pytest.mark.parametrize("kind", ["bahdanau", "bahdanau_norm", "luong",
                                  "luong_scale"])
def test_mechanisms_take_tf_addons_constructor_and_equal_the_core(kind):
    values = memory()
    query = np.random.default_rng(1).normal(size=(B, U)).astype("float32")
    if kind.startswith("bahdanau"):
        normalize = kind.endswith("norm")
        tfa = tfa_s2s.BahdanauAttention(8, values, LENGTHS, normalize)
        core = keras_rnn.BahdanauAttention(8, normalize=normalize)
    else:
        scale = kind.endswith("scale")
        tfa = tfa_s2s.LuongAttention(U, values, LENGTHS, scale)  # units first
        core = keras_rnn.LuongAttention("general", scale=scale)
    alignments, next_state = tfa([query, None])
    core.build(query.shape, values.shape)
    by_name = {v.name: v for v in tfa.weights}
    for variable in core.weights:
        variable.assign(by_name[variable.name])
    mask = np.arange(S)[None] < LENGTHS[:, None]
    _, expected = core(query, values, values_mask=mask)
    np.testing.assert_allclose(_np(alignments), _np(expected), atol=1e-6)
    np.testing.assert_array_equal(_np(next_state), _np(alignments))
    assert not _np(alignments)[1, 3:].any()
    # setup_memory replaces the memory; the keys are computed once there.
    tfa.setup_memory(values[:, :4], memory_sequence_length=[4, 4])
    assert tfa.keys.shape[1] == 4 and tfa([query, None])[0].shape == (B, 4)


def test_luong_rejects_a_query_of_another_width():
    mechanism = tfa_s2s.LuongAttention(U, memory())
    with pytest.raises(ValueError, match="units"):
        mechanism([np.ones((B, U + 1), "float32"), None])


def test_hardmax_probability_fn():
    mechanism = tfa_s2s.BahdanauAttention(8, memory(), LENGTHS,
                                          probability_fn="hardmax")
    alignments, _ = mechanism([np.ones((B, U), "float32"), None])
    got = _np(alignments)
    assert set(np.unique(got)) <= {0.0, 1.0} and (got.sum(1) == 1).all()
    assert not got[1, 3:].any()


# ------------------------------------------------------------ the wrapper


def make_cell(kind="bahdanau", seed=0, mem=None, lengths=LENGTHS, **kwargs):
    keras.utils.set_random_seed(seed)
    mem = memory(seed) if mem is None else mem
    if kind == "bahdanau":
        mechanism = tfa_s2s.BahdanauAttention(8, mem, lengths)
    else:
        mechanism = tfa_s2s.LuongAttention(U, mem, lengths)
    return tfa_s2s.AttentionWrapper(keras.layers.LSTMCell(U), mechanism,
                                    attention_layer_size=5, **kwargs)


@pytest.mark.parametrize("kind", ["bahdanau", "luong"])
def test_wrapper_in_keras_rnn_equals_the_core_wrapper(kind):
    x = np.random.default_rng(2).normal(size=(B, 4, E)).astype("float32")
    cell = make_cell(kind)
    rnn = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    outputs, *states = rnn(x)
    state = tfa_s2s.AttentionWrapperState(*states)
    assert outputs.shape == (B, 4, 5) and state.alignments.shape == (B, S)
    # The core wrapper (no activation on the attention layer, as TF Addons)
    # stepped by hand over the same memory and weights.
    mechanism = cell.attention_mechanism
    core_mech = (keras_rnn.BahdanauAttention(8) if kind == "bahdanau"
                 else keras_rnn.LuongAttention("general"))
    core = keras_rnn.AttentionWrapper(keras.layers.LSTMCell(U), core_mech,
                                      attention_layer_size=5,
                                      attention_activation=None)
    core.build((B, E), D)
    def key(variable):  # (owner kind, weight name)
        owner = variable.path.split("/")[-2].lower()
        return ("attention" if "attention" in owner and "layer" not in owner
                else owner.rstrip("_1"), variable.name)

    by_key = {key(v): v for v in cell.weights}
    assert len(by_key) == len(core.weights)
    for variable in core.weights:
        variable.assign(by_key[key(variable)])
    core_memory = core_mech.prepare(mechanism.values, mechanism.memory.mask)
    core_state = core.get_initial_state(core_memory)
    for t in range(4):
        out, core_state = core(x[:, t], core_state, core_memory)
        np.testing.assert_allclose(_np(outputs[:, t]), _np(out), atol=1e-6)
    np.testing.assert_allclose(_np(state.alignments),
                               _np(core_state.alignments), atol=1e-6)


def test_initial_state_clone_and_state_size():
    cell = make_cell()
    state = cell.get_initial_state(batch_size=B, dtype="float32")
    assert isinstance(state, tfa_s2s.AttentionWrapperState)
    assert state.attention.shape == (B, 5) and state.alignments.shape == (B, S)
    h = np.ones((B, U), "float32")
    cloned = state.clone(cell_state=[h, h])
    np.testing.assert_array_equal(_np(cloned.cell_state[0]), h)
    assert cell.state_size.alignments == S and cell.output_size == 5
    output, next_state = cell(np.ones((B, E), "float32"), cloned)
    assert isinstance(next_state, tfa_s2s.AttentionWrapperState)
    assert output.shape == (B, 5)
    with pytest.raises(ValueError, match="cell_input_fn"):
        tfa_s2s.AttentionWrapper(keras.layers.LSTMCell(U), cell.attention_mechanism,
                                 cell_input_fn=lambda a, b: a)


def test_keras_rnn_of_attention_wrapper_trains():
    rng = np.random.default_rng(3)
    mem = rng.normal(size=(8, S, D)).astype("float32")
    cell = make_cell(mem=mem, lengths=None)
    model = keras.Sequential([keras.Input((4, E)),
                              keras.layers.RNN(cell, return_sequences=True),
                              keras.layers.Dense(V)])
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(8, 4, E)).astype("float32")
    y = np.broadcast_to(np.arange(4) + 3, (8, 4))  # learnable: y_t = t + 3
    history = model.fit(x, y, batch_size=8, epochs=8, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses


# --------------------------------------------------- BasicDecoder, samplers


def decoder_parts(kind="bahdanau", seed=0, **kwargs):
    cell = make_cell(kind, seed, **kwargs)
    embedding = keras.layers.Embedding(V, E)
    embedding.build((None,))
    dense = keras.layers.Dense(V)
    dense.build((None, 5))
    cell.build((B, E))
    randomize(embedding, dense, cell, seed=seed)
    return cell, embedding, dense


TARGETS = np.array([[1, 3, 4, 5, 6], [1, 4, 5, 7, 0]])


def test_basic_decoder_teacher_forcing_equals_keras_rnn_of_the_cell():
    cell, embedding, dense = decoder_parts(alignment_history=True)
    inputs = embedding(TARGETS)
    state = cell.get_initial_state(batch_size=B, dtype="float32")
    decoder = tfa_s2s.BasicDecoder(cell, tfa_s2s.TrainingSampler(),
                                   output_layer=dense)
    outputs, final_state, lengths = decoder(inputs, initial_state=state,
                                            sequence_length=[5, 4])
    expected = dense(keras.layers.RNN(cell, return_sequences=True)(
        inputs, initial_state=list(state)))
    np.testing.assert_allclose(_np(outputs.rnn_output), _np(expected), atol=1e-5)
    np.testing.assert_array_equal(_np(outputs.sample_id),
                                  _np(ops.argmax(expected, -1)))
    np.testing.assert_array_equal(_np(lengths), [5, 4])
    assert final_state.alignment_history.shape == (5, B, S)  # time-major
    # impute_finished: the finished sequence's last step is zeros.
    decoder = tfa_s2s.BasicDecoder(cell, tfa_s2s.TrainingSampler(),
                                   output_layer=dense, impute_finished=True)
    outputs, _, _ = decoder(inputs, initial_state=state, sequence_length=[5, 4])
    assert not _np(outputs.rnn_output)[1, 4].any()
    np.testing.assert_allclose(_np(outputs.rnn_output)[:, :4],
                               _np(expected)[:, :4], atol=1e-5)


def test_scheduled_sampling_at_0_is_teacher_forcing_and_at_1_feeds_samples():
    cell, embedding, dense = decoder_parts()
    inputs = embedding(TARGETS)
    state = cell.get_initial_state(batch_size=B, dtype="float32")
    forced, _, _ = tfa_s2s.BasicDecoder(
        cell, tfa_s2s.TrainingSampler(), output_layer=dense)(
            inputs, initial_state=state)
    never, _, _ = tfa_s2s.BasicDecoder(
        cell, tfa_s2s.ScheduledEmbeddingTrainingSampler(0.0, seed=1),
        output_layer=dense)(inputs, initial_state=state,
                            embedding=embedding.embeddings)
    np.testing.assert_allclose(_np(never.rnn_output), _np(forced.rnn_output),
                               atol=1e-6)
    assert (_np(never.sample_id) == -1).all()
    always, _, _ = tfa_s2s.BasicDecoder(
        cell, tfa_s2s.ScheduledEmbeddingTrainingSampler(1.0, seed=1),
        output_layer=dense)(inputs, initial_state=state,
                            embedding=embedding.embeddings)
    assert (_np(always.sample_id) >= 0).all()
    np.testing.assert_allclose(_np(always.rnn_output)[:, 0],
                               _np(forced.rnn_output)[:, 0], atol=1e-6)


def test_greedy_and_sample_samplers_decode_until_the_end_token():
    cell, embedding, dense = decoder_parts()
    state = cell.get_initial_state(batch_size=B, dtype="float32")
    decoder = tfa_s2s.BasicDecoder(cell, tfa_s2s.GreedyEmbeddingSampler(),
                                   output_layer=dense, maximum_iterations=7)
    outputs, _, lengths = decoder(embedding.embeddings,
                                  start_tokens=np.array([1, 1]), end_token=END,
                                  initial_state=state)
    ids, logits = _np(outputs.sample_id), _np(outputs.rnn_output)
    np.testing.assert_array_equal(ids, logits.argmax(-1))
    for row, length in zip(ids, _np(lengths)):
        ends = list(row).index(END) + 1 if END in row else 7
        assert length == ends
    sampled, _, _ = tfa_s2s.BasicDecoder(
        cell, tfa_s2s.SampleEmbeddingSampler(softmax_temperature=0.5, seed=3),
        output_layer=dense, maximum_iterations=7)(
            embedding.embeddings, start_tokens=np.array([1, 1]),
            end_token=END, initial_state=state)
    assert sampled.sample_id.shape[0] == B


# ----------------------------------------------------- beam search = core


class CoreModel:
    """The decoding protocol written directly over the same cell, embedding
    and output layer (independent of the adapter)."""

    pad_id = bos_id = -1
    eos_id = END
    target_vocab_size = V

    def __init__(self, cell, embedding, dense, start, state, alpha, beta):
        self.cell, self.embedding, self.dense = cell, embedding, dense
        self.start, self.state = start, state
        self.alpha, self.beta = alpha, beta

    def check_source(self, source):
        pass

    def decoding_settings(self, **overrides):
        return keras_rnn.DecodingSettings(
            beam_size=K, n_best=K, max_length=6, length_penalty_alpha=self.alpha,
            coverage_penalty_beta=self.beta).replace(**overrides)

    def encode(self, source, training=False):
        mask = None
        mechanism = getattr(self.cell, "attention_mechanism", None)
        time = 1 if mechanism is None else S
        if mechanism is not None:
            mask = np.arange(S)[None] < LENGTHS[:, None]
        return AttentionMemory(ops.zeros((B, time, 1)), None, mask), self.state

    def decode_step(self, tokens, state, memory):
        tokens = ops.where(tokens < 0, 1, tokens)
        out, state = self.cell(self.embedding(tokens), state)
        return self.dense(out), state


@pytest.mark.parametrize("attention", [True, False], ids=["attention", "plain_lstm"])
def test_beam_search_decoder_equals_the_core_beam_search_and_compiles(attention):
    alpha, beta = (0.6, 0.3) if attention else (0.6, 0.0)
    if attention:
        cell, embedding, dense = decoder_parts()
        mechanism = cell.attention_mechanism
        untiled_state = cell.get_initial_state(batch_size=B, dtype="float32")
        mechanism.setup_memory(tfa_s2s.tile_batch(mechanism.values, K),
                               tfa_s2s.tile_batch(LENGTHS, K))
        state = cell.get_initial_state(batch_size=B * K, dtype="float32")
    else:
        keras.utils.set_random_seed(0)
        cell = keras.layers.LSTMCell(U)
        embedding = keras.layers.Embedding(V, E)
        embedding.build((None,))
        dense = keras.layers.Dense(V)
        dense.build((None, U))
        cell.build((None, E))
        randomize(cell, embedding, dense)
        h = np.random.default_rng(5).normal(size=(B, U)).astype("float32")
        untiled_state = [h, -h]
        state = tfa_s2s.tile_batch(untiled_state, K)
    decoder = tfa_s2s.BeamSearchDecoder(
        cell, beam_width=K, output_layer=dense, length_penalty_weight=alpha,
        coverage_penalty_weight=beta, maximum_iterations=6)
    start = np.array([1, 1], "int32")

    def run(table, state):
        return tfa_s2s.dynamic_decode(
            decoder, maximum_iterations=6, decoder_init_input=table,
            decoder_init_kwargs=dict(start_tokens=start, end_token=END,
                                     initial_state=state))

    outputs, final_state, lengths = run(embedding.embeddings, state)
    core = decoding.beam_search(
        CoreModel(cell, embedding, dense, start, untiled_state, alpha, beta),
        np.zeros((B, 1), "int32"))
    core_ids = np.where(_np(core.ids) < 0, END, _np(core.ids))
    predicted = _np(outputs.predicted_ids).transpose(0, 2, 1)
    np.testing.assert_array_equal(predicted, core_ids[:, :, :predicted.shape[2]])
    np.testing.assert_array_equal(_np(lengths), _np(core.lengths))
    np.testing.assert_allclose(_np(outputs.beam_search_decoder_output.scores)[:, 0],
                               _np(core.scores), rtol=1e-6)
    np.testing.assert_allclose(_np(final_state.log_probs), _np(core.log_probs),
                               rtol=1e-6)
    assert predicted.shape[:2] == (B, K)

    # Compiled: the same ids and scores (keras_rnn compiles nothing on torch).
    if BACKEND == "torch":
        return
    if BACKEND == "jax":
        import jax

        compiled = jax.jit(lambda table, state: run(table, state)[0])
    else:
        import tensorflow as tf

        compiled = tf.function(lambda table, state: run(table, state)[0],
                               jit_compile=True)
    got = compiled(ops.convert_to_tensor(embedding.embeddings), state)
    ids = _np(got.predicted_ids).transpose(0, 2, 1)[:, :, :predicted.shape[2]]
    np.testing.assert_array_equal(ids, predicted)
    np.testing.assert_allclose(
        _np(got.beam_search_decoder_output.scores)[:, 0],
        _np(core.scores), rtol=1e-5)


def test_mechanisms_and_wrapper_config_round_trip():
    mechanism = tfa_s2s.LuongAttention(U, memory(), LENGTHS, scale=True)
    cell = tfa_s2s.AttentionWrapper(keras.layers.LSTMCell(U), mechanism, 3,
                                    alignment_history=True)
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(cell))
    assert isinstance(again, tfa_s2s.AttentionWrapper)
    assert isinstance(again.attention_mechanism, tfa_s2s.LuongAttention)
    assert again.get_config() == cell.get_config()
    bahdanau = tfa_s2s.BahdanauAttention(8, normalize=True,
                                         probability_fn="hardmax")
    clone = tfa_s2s.BahdanauAttention.from_config(bahdanau.get_config())
    assert clone.normalize and clone.get_config() == bahdanau.get_config()
