"""int8 recurrent inference (`cell.quantize("int8")`, `Seq2Seq.quantize`):
the cells' int8 arithmetic against a NumPy reference, quantized against float
outputs, and `.keras` round trips (keras_rnn/_quantize.py)."""

import os

import numpy as np
import pytest

import keras
from keras import ops

import keras_rnn
from keras_rnn._cell import RecurrentCell
from keras_rnn.tfa.rnn import LayerNormSimpleRNNCell


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


# ------------------------------------------------ the NumPy int8 reference

EPS = keras.backend.epsilon()


def np_abs_max(x, axis):
    """abs-max quantization: `(q, scale)`, `q = clip(round(x * scale))`."""
    scale = 127.0 / (np.max(np.abs(x), axis=axis, keepdims=True) + EPS)
    scale = scale.astype("float32")
    q = np.clip(np.round(x * scale), -127, 127).astype("int8")
    return q, scale


def np_int8_matmul(x, w_q, w_scale):
    """Per-row inputs, int8 x int8 accumulated in int32, then rescaled."""
    x_q, x_scale = np_abs_max(x, axis=-1)
    acc = x_q.astype("int32") @ w_q.astype("int32")
    return acc.astype("float32") / (x_scale * w_scale)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _cell(cell, input_dim=5, seed=0):
    keras.utils.set_random_seed(seed)
    cell.build((None, input_dim))
    if cell.use_bias:  # non-zero biases, so that they count in the checks
        rng = np.random.RandomState(seed)
        cell.bias.assign(rng.uniform(-0.5, 0.5, cell.bias.shape).astype("float32"))
    return cell


X = np.random.RandomState(1).randn(3, 5).astype("float32")
H = np.random.RandomState(2).uniform(-1, 1, (3, 4)).astype("float32")
C = np.random.RandomState(3).uniform(-1, 1, (3, 4)).astype("float32")

CELLS = {
    "simple": lambda: keras_rnn.SimpleRNNCell(4),
    "lstm": lambda: keras_rnn.LSTMCell(4),
    "lstm_ln_peephole": lambda: keras_rnn.LSTMCell(4, layer_norm=True, peephole=True),
    "gru": lambda: keras_rnn.GRUCell(4),
    "gru_v1": lambda: keras_rnn.GRUCell(4, reset_after=False),
    "gru_ln": lambda: keras_rnn.LayerNormGRUCell(4),
    "tfa_ln_simple": lambda: LayerNormSimpleRNNCell(4),
}


@pytest.mark.parametrize("name", sorted(CELLS))
def test_quantize_stores_abs_max_int8_per_output_channel(name):
    cell = _cell(CELLS[name]())
    kernel, recurrent = _np(cell.kernel), _np(cell.recurrent_kernel)
    cell.quantize("int8")
    assert cell.quantization_mode == "int8"
    assert cell.dtype_policy.name == "int8_from_float32"
    for float_w, var, scale in (
        (kernel, cell.kernel, cell.kernel_scale),
        (recurrent, cell.recurrent_kernel, cell.recurrent_kernel_scale),
    ):
        q, s = np_abs_max(float_w, axis=0)
        assert var.dtype == "int8" and not var.trainable and not scale.trainable
        np.testing.assert_array_equal(_np(var), q)
        np.testing.assert_allclose(_np(scale), s[0], rtol=1e-6)
    # x @ W and h @ U through the int8 path, against the NumPy reference.
    np.testing.assert_allclose(
        _np(cell.input_matmul(X)),
        np_int8_matmul(X, _np(cell.kernel), _np(cell.kernel_scale)),
        rtol=1e-5, atol=1e-5,
    )
    np.testing.assert_allclose(
        _np(cell.recurrent_matmul(H)),
        np_int8_matmul(H, _np(cell.recurrent_kernel), _np(cell.recurrent_kernel_scale)),
        rtol=1e-5, atol=1e-5,
    )
    with pytest.raises(ValueError, match="already quantized"):
        cell.quantize("int8")


def test_lstm_step_matches_numpy_int8_reference():
    cell = _cell(keras_rnn.LSTMCell(4))
    cell.quantize("int8")
    w, ws = _np(cell.kernel), _np(cell.kernel_scale)
    u, us = _np(cell.recurrent_kernel), _np(cell.recurrent_kernel_scale)
    z = np_int8_matmul(X, w, ws) + _np(cell.bias) + np_int8_matmul(H, u, us)
    i, f, g, o = np.split(z, 4, axis=-1)
    c = _sigmoid(f) * C + _sigmoid(i) * np.tanh(g)
    h = _sigmoid(o) * np.tanh(c)
    out, (h_t, c_t) = cell(X, [H, C])
    np.testing.assert_allclose(_np(h_t), h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(c_t), c, rtol=1e-5, atol=1e-5)


def test_gru_v1_step_matches_numpy_int8_reference():
    cell = _cell(keras_rnn.GRUCell(4, reset_after=False))
    cell.quantize("int8")
    w, ws = _np(cell.kernel), _np(cell.kernel_scale)
    u, us = _np(cell.recurrent_kernel), _np(cell.recurrent_kernel_scale)
    x_z, x_r, x_h = np.split(np_int8_matmul(X, w, ws) + _np(cell.bias), 3, axis=-1)
    # Column blocks of U keep their own per-column scales.
    h_z, h_r = np.split(np_int8_matmul(H, u[:, :8], us[:8]), 2, axis=-1)
    z, r = _sigmoid(x_z + h_z), _sigmoid(x_r + h_r)
    candidate = np.tanh(x_h + np_int8_matmul(r * H, u[:, 8:], us[8:]))
    h = z * H + (1 - z) * candidate
    out, _ = cell(X, [H])
    np.testing.assert_allclose(_np(out), h, rtol=1e-5, atol=1e-5)


def test_weight_only_config_keeps_float_inputs():
    cell = _cell(keras_rnn.SimpleRNNCell(4))
    cell.quantize(config=keras.quantizers.Int8QuantizationConfig(
        weight_quantizer=keras.quantizers.AbsMaxQuantizer(axis=0),
        activation_quantizer=None,
    ))
    w, ws = _np(cell.kernel), _np(cell.kernel_scale)
    np.testing.assert_allclose(
        _np(cell.input_matmul(X)), (X @ w.astype("float32")) / ws,
        rtol=1e-5, atol=1e-5,
    )


def test_other_modes_are_not_implemented():
    cell = _cell(keras_rnn.LSTMCell(4))
    with pytest.raises(NotImplementedError):
        cell.quantize("int4")
    assert cell.quantization_mode is None and cell.kernel.dtype == "float32"


# ------------------------------------------- layers, models, round trips

SEQ = np.random.RandomState(4).randn(2, 6, 5).astype("float32")


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("make", [
    lambda: keras_rnn.LSTM(8, return_sequences=True),
    lambda: keras_rnn.GRU(8, return_sequences=True, layer_norm=True),
    lambda: keras.layers.Bidirectional(keras_rnn.LSTM(8, return_sequences=True)),
    lambda: keras.layers.RNN(keras_rnn.SimpleRNNCell(8), return_sequences=True),
], ids=["lstm", "gru_ln", "bidirectional", "keras_rnn_wrapper"])
def test_layer_quantize_and_keras_round_trip(make, tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 5))
    model = keras.Model(inputs, make()(inputs))
    expected = _np(model(SEQ))
    model.quantize("int8")  # Keras reaches the cells without sublayers
    keras_rnn._quantize.quantize_cells(model, "int8")  # and the rest
    cells = [l for l in model._flatten_layers() if isinstance(l, RecurrentCell)]
    assert cells and all(c.kernel.dtype == "int8" for c in cells)
    quantized = _np(model(SEQ))
    assert _rel(quantized, expected) < 0.02
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    loaded_cells = [l for l in loaded._flatten_layers() if isinstance(l, RecurrentCell)]
    assert len(loaded_cells) == len(cells)
    assert all(c.quantization_mode == "int8" for c in loaded_cells)
    np.testing.assert_allclose(_np(loaded(SEQ)), quantized, rtol=1e-6, atol=1e-6)


def test_quantized_lstm_takes_no_cudnn_kernel():
    layer = keras_rnn.LSTM(8)
    layer.build((None, 6, 5))
    assert layer.use_cudnn == "auto"
    layer.cell.quantize("int8")
    assert layer.use_cudnn is False


# --------------------------------------------------------------- Seq2Seq

SOURCE = np.array([[3, 4, 5, 6, 2], [7, 8, 2, 0, 0], [4, 9, 4, 10, 2]])
TARGET_IN = np.array([[1, 5, 6, 7], [1, 9, 10, 0], [1, 3, 0, 0]])


def _seq2seq(**kwargs):
    keras.utils.set_random_seed(0)
    options = dict(embedding_dim=16, units=32, encoder_units=16, seed=0,
                   attention_layer_size=32)
    options.update(kwargs)
    model = keras_rnn.Seq2Seq(13, 17, **options)
    model.build()
    return model


@pytest.mark.parametrize("options", [
    {"cell": "lstm"},
    {"cell": "gru", "cell_options": {"layer_norm": True}, "attention": "luong"},
], ids=["lstm", "gru_ln_luong"])
def test_seq2seq_quantize_covers_every_cell_and_dense(options, tmp_path):
    model = _seq2seq(**options)
    inputs = {"source": SOURCE, "target": TARGET_IN}
    logits = _np(model(inputs))
    greedy = model.decode(SOURCE, method="greedy").ids  # caches a decoder
    model.quantize("int8")
    quantized_layers = [
        layer for layer in model._flatten_layers()
        if hasattr(layer, "kernel") or hasattr(layer, "embeddings")
    ]
    assert quantized_layers
    for layer in quantized_layers:
        assert layer.quantization_mode == "int8", layer.name
    q_logits = _np(model(inputs))
    # Random tiny models (widths 16-32, seven int8 matmuls in a row): 2-3%
    # relative error; the trained quick translator's is in the report of
    # benchmarks/bench_int8.py. Its near-tied logits make greedy ids differ
    # more than a trained model's do.
    assert _rel(q_logits, logits) < 0.05
    q_greedy = model.decode(SOURCE, method="greedy").ids
    assert q_greedy.shape[0] == greedy.shape[0]
    width = min(greedy.shape[1], q_greedy.shape[1])
    assert np.mean(q_greedy[:, :width] == greedy[:, :width]) >= 0.6

    path = os.path.join(tmp_path, "seq2seq.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(_np(loaded(inputs)), q_logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(loaded.decode(SOURCE, method="greedy").ids, q_greedy)
