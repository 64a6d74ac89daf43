"""Attention mechanisms and AttentionWrapper against NumPy references."""

import numpy as np
import pytest

import keras
from keras import ops

import keras_rnn
from tests.conftest import randomize_weights

BATCH, SOURCE, QUERY, VALUE = 3, 6, 5, 4
LENGTHS = np.array([6, 4, 1])  # real positions per sentence


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(BATCH, QUERY)).astype("float32")
    values = rng.normal(size=(BATCH, SOURCE, VALUE)).astype("float32")
    mask = np.arange(SOURCE)[None, :] < LENGTHS[:, None]
    return query, values, mask


def _np_softmax(scores, mask):
    scores = np.where(mask, scores, -np.inf)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype="float64")


def _reference_scores(layer, query, values):
    """The scores of the module docstrings, in float64 NumPy."""
    q, h = query.astype("float64"), values.astype("float64")
    if isinstance(layer, keras_rnn.BahdanauAttention):
        hidden = h @ _np(layer.memory_kernel) + (q @ _np(layer.query_kernel))[:, None]
        v = _np(layer.attention_v)
        if layer.normalize:
            hidden = hidden + _np(layer.attention_b)
            v = _np(layer.attention_g) * v / np.linalg.norm(v)
        return np.tanh(hidden) @ v
    mode = layer.score_mode
    if mode == "dot":
        scores = np.einsum("bq,bsq->bs", q, h)
    elif mode == "general":
        scores = np.einsum("bq,bsq->bs", q, h @ _np(layer.memory_kernel))
    else:
        hidden = h @ _np(layer.memory_kernel) + (q @ _np(layer.query_kernel))[:, None]
        scores = np.tanh(hidden) @ _np(layer.attention_v)
    if layer.scale:
        scores = _np(layer.attention_g) * scores
    return scores


MECHANISMS = {
    "bahdanau": lambda: keras_rnn.BahdanauAttention(7),
    "bahdanau_normalized": lambda: keras_rnn.BahdanauAttention(7, normalize=True),
    "luong_general": lambda: keras_rnn.LuongAttention("general"),
    "luong_general_scaled": lambda: keras_rnn.LuongAttention("general", scale=True),
    "luong_concat": lambda: keras_rnn.LuongAttention("concat", units=7),
}


@pytest.mark.parametrize("name", sorted(MECHANISMS))
def test_scores_context_and_weights_match_numpy(name):
    query, values, mask = _inputs()
    layer = MECHANISMS[name]()
    layer(query, values, values_mask=mask)
    randomize_weights(layer, seed=1)
    context, weights = layer(query, values, values_mask=mask)
    scores = _reference_scores(layer, query, values)
    np.testing.assert_allclose(_np(layer.score(query, layer.compute_keys(values))),
                               scores, atol=1e-5)
    alpha = _np_softmax(scores, mask)
    np.testing.assert_allclose(_np(weights), alpha, atol=1e-6)
    np.testing.assert_allclose(_np(context), np.einsum("bs,bsv->bv", alpha, values),
                               atol=1e-5)


@pytest.mark.parametrize("name", sorted(MECHANISMS))
def test_weights_sum_to_one_and_are_exactly_zero_on_padding(name):
    query, values, mask = _inputs(seed=2)
    # Large values on the padding must not leak into the weights.
    values = np.where(mask[..., None], values, 1e3).astype("float32")
    layer = MECHANISMS[name]()
    _, weights = layer(query, values, values_mask=mask)
    weights = np.asarray(ops.convert_to_numpy(weights))
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    assert np.all(weights[~mask] == 0.0)
    assert np.all(weights[mask] > 0.0)


def test_luong_dot_is_the_plain_dot_product():
    query, values, mask = _inputs(seed=3)
    values = values[..., :QUERY] if VALUE >= QUERY else np.concatenate(
        [values, values[..., : QUERY - VALUE]], -1)
    layer = keras_rnn.LuongAttention("dot")
    context, weights = layer(query, values, values_mask=mask)
    alpha = _np_softmax(np.einsum("bq,bsq->bs", query, values), mask)
    np.testing.assert_allclose(_np(weights), alpha, atol=1e-6)
    assert not layer.weights


def test_precomputed_keys_give_the_same_result():
    query, values, mask = _inputs(seed=4)
    layer = keras_rnn.BahdanauAttention(6)
    context, weights = layer(query, values, values_mask=mask)
    memory = layer.prepare(values, mask)
    context2, weights2 = layer(query, memory.values, values_mask=memory.mask, keys=memory.keys)
    np.testing.assert_allclose(_np(context2), _np(context), atol=1e-6)
    np.testing.assert_allclose(_np(weights2), _np(weights), atol=1e-7)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="score_mode"):
        keras_rnn.LuongAttention("additive")
    with pytest.raises(ValueError, match="units"):
        keras_rnn.LuongAttention("concat")
    with pytest.raises(ValueError, match="units"):
        keras_rnn.BahdanauAttention(0)
    query, values, mask = _inputs()
    with pytest.raises(ValueError, match="same width"):
        keras_rnn.LuongAttention("dot")(query, values)


@pytest.mark.parametrize("name", sorted(MECHANISMS))
def test_mechanism_config_round_trip(name):
    layer = MECHANISMS[name]()
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


# ------------------------------------------------------------ the wrapper


def _wrapper(cells, attention_layer_size=8, input_feeding=True,
             output_attention=True):
    mechanism = keras_rnn.LuongAttention("general")
    wrapper = keras_rnn.AttentionWrapper(
        cells, mechanism, attention_layer_size=attention_layer_size,
        input_feeding=input_feeding, output_attention=output_attention)
    return wrapper, mechanism


@pytest.mark.parametrize("input_feeding", [True, False])
def test_wrapper_step_is_the_documented_composition(input_feeding):
    _, values, mask = _inputs(seed=5)
    cells = [keras_rnn.GRUCell(6), keras_rnn.LSTMCell(5)]
    wrapper, mechanism = _wrapper(cells, input_feeding=input_feeding)
    wrapper.build((BATCH, 3), VALUE)
    randomize_weights(wrapper, seed=6)
    memory = mechanism.prepare(values, mask)
    state = wrapper.get_initial_state(memory)
    rng = np.random.default_rng(7)
    for _ in range(3):  # several steps, so input feeding matters
        x = rng.normal(size=(BATCH, 3)).astype("float32")
        output, new_state = wrapper(x, state, memory)
        # The same step by hand.
        inp = np.concatenate([x, _np(state.attention)], -1) if input_feeding else x
        h, s0 = cells[0](ops.convert_to_tensor(inp, "float32"), list(state.cell_state[0]))
        h, s1 = cells[1](h, list(state.cell_state[1]))
        context, alpha = mechanism(h, values, values_mask=mask)
        attention = np.tanh(np.concatenate([_np(h), _np(context)], -1)
                            @ _np(wrapper.attention_layer.kernel))
        np.testing.assert_allclose(_np(output), attention, atol=1e-5)
        np.testing.assert_allclose(_np(new_state.attention), attention, atol=1e-5)
        np.testing.assert_allclose(_np(new_state.alignments), _np(alpha), atol=1e-6)
        np.testing.assert_allclose(_np(new_state.cell_state[1][1]), _np(s1[1]), atol=1e-6)
        state = new_state


def test_wrapper_without_attention_layer_outputs_context_or_cell_output():
    _, values, mask = _inputs(seed=8)
    cell = keras_rnn.SimpleRNNCell(5)
    wrapper, mechanism = _wrapper(cell, attention_layer_size=None)
    wrapper.build((BATCH, 2), VALUE)
    memory = mechanism.prepare(values, mask)
    state = wrapper.get_initial_state(memory)
    assert tuple(state.attention.shape) == (BATCH, VALUE)
    x = np.ones((BATCH, 2), "float32")
    output, state = wrapper(x, state, memory)
    context, _ = mechanism(_np(state.cell_state[0][0]).astype("float32"), values, values_mask=mask)
    np.testing.assert_allclose(_np(output), _np(context), atol=1e-6)

    cell = keras_rnn.SimpleRNNCell(5)
    wrapper, mechanism = _wrapper(cell, output_attention=False)
    wrapper.build((BATCH, 2), VALUE)
    memory = mechanism.prepare(values, mask)
    output, state = wrapper(x, wrapper.get_initial_state(memory), memory)
    np.testing.assert_allclose(_np(output), _np(state.cell_state[0][0]), atol=0)


def test_wrapper_config_round_trip():
    wrapper, _ = _wrapper([keras_rnn.GRUCell(4, layer_norm=True), keras_rnn.LSTMCell(3)])
    clone = keras_rnn.AttentionWrapper.from_config(wrapper.get_config())
    assert clone.get_config() == wrapper.get_config()
    assert [c.units for c in clone.cells] == [4, 3]
    assert clone.cells[0].layer_norm


# ------------------------------------------- the conditional decoder (cGRU)


def _np_gru(cell, x, h):
    """Keras's GRU with `reset_after=True` (GRUCell's docstring), float64."""
    kernel, recurrent = _np(cell.kernel), _np(cell.recurrent_kernel)
    bias_in, bias_rec = _np(cell.bias)
    xz, xr, xh = np.split(x @ kernel + bias_in, 3, axis=-1)
    hz, hr, hh = np.split(h @ recurrent + bias_rec, 3, axis=-1)
    z, r = 1 / (1 + np.exp(-(xz + hz))), 1 / (1 + np.exp(-(xr + hr)))
    return z * h + (1 - z) * np.tanh(xh + r * hh)


def test_conditional_wrapper_is_nematus_cgru_in_numpy():
    """Sennrich et al. 2017 (Nematus' cGRU), transcribed: s' = GRU1(x, s),
    c, alpha = attention(s'), s = GRU2(c, s'), a = tanh(W_c [s; c]); the
    next step starts from s."""
    _, values, mask = _inputs(seed=9)
    mechanism = keras_rnn.BahdanauAttention(7)
    first, second = keras_rnn.GRUCell(6), keras_rnn.GRUCell(6)
    wrapper = keras_rnn.AttentionWrapper(
        first, mechanism, attention_layer_size=8, input_feeding=False,
        conditional_cell=second)
    wrapper.build((BATCH, 3), VALUE)
    randomize_weights(wrapper, seed=10)
    memory = mechanism.prepare(values, mask)
    state = wrapper.get_initial_state(memory, ([np.full((BATCH, 6), 0.3, "float32")],))
    s = np.full((BATCH, 6), 0.3)
    rng = np.random.default_rng(11)
    for _ in range(3):
        x = rng.normal(size=(BATCH, 3)).astype("float32")
        output, state = wrapper(x, state, memory)
        s_first = _np_gru(first, x.astype("float64"), s)
        alpha = _np_softmax(_reference_scores(mechanism, s_first, values), mask)
        context = np.einsum("bs,bsv->bv", alpha, values.astype("float64"))
        s = _np_gru(second, context, s_first)
        attention = np.tanh(np.concatenate([s, context], -1)
                            @ _np(wrapper.attention_layer.kernel))
        np.testing.assert_allclose(_np(output), attention, atol=1e-5)
        np.testing.assert_allclose(_np(state.cell_state[0][0]), s, atol=1e-5)
        np.testing.assert_allclose(_np(state.alignments), alpha, atol=1e-6)


def test_conditional_cell_must_match_the_top_cells_state():
    with pytest.raises(ValueError, match=r"conditional_cell must have the state sizes .*\[5, 5\]"):
        keras_rnn.AttentionWrapper(
            keras_rnn.LSTMCell(5), keras_rnn.BahdanauAttention(4),
            conditional_cell=keras_rnn.GRUCell(5))
    wrapper = keras_rnn.AttentionWrapper(
        [keras_rnn.GRUCell(3), keras_rnn.LSTMCell(5)], keras_rnn.BahdanauAttention(4),
        input_feeding=False, conditional_cell=keras_rnn.LSTMCell(5, layer_norm=True))
    clone = keras_rnn.AttentionWrapper.from_config(wrapper.get_config())
    assert clone.get_config() == wrapper.get_config()
    assert clone.conditional_cell.layer_norm and not clone.input_feeding
    assert "conditional_cell" not in _wrapper(keras_rnn.GRUCell(3))[0].get_config()
