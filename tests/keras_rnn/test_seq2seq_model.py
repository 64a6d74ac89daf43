"""Seq2Seq: scheduled sampling in its decoder loop, teacher forcing, saving,
and learning a synthetic task (the loss: tests/keras_rnn/test_losses.py; the schedules:
tests/keras_rnn/test_schedules.py)."""

import os

import numpy as np
import pytest

import keras
from keras import ops

import keras_rnn
from keras_rnn import decoding
from examples.sort_digits import digit_task

PAD, BOS, EOS = 0, 1, 2


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _model(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    options = dict(embedding_dim=6, units=8, encoder_units=5, cell="gru")
    options.update(kwargs)
    model = keras_rnn.Seq2Seq(11, 13, **options)
    model.build()
    return model


SOURCE = np.array([[3, 4, 5, 6, 0], [7, 8, 0, 0, 0], [4, 4, 4, 4, 4]])
TARGET_IN = np.array([[BOS, 5, 6, 7], [BOS, 9, 10, 0], [BOS, 3, 0, 0]])
TARGET_OUT = np.array([[5, 6, 7, EOS], [9, 10, EOS, 0], [3, EOS, 0, 0]])
INPUTS = {"source": SOURCE, "target": TARGET_IN}


# ---------------------------------------------------- scheduled sampling


def test_scheduled_sampling_with_full_teacher_forcing_is_teacher_forcing():
    plain = _model(seed=1)
    sampled = _model(seed=1, scheduled_sampling=dict(schedule="linear", k=1.0, c=0.0))
    sampled.set_weights(plain.get_weights())
    np.testing.assert_allclose(_np(sampled(INPUTS, training=True)),
                               _np(plain(INPUTS, training=True)), atol=1e-5)
    assert int(_np(sampled.sampling_step)) == 1  # counts training calls
    sampled(INPUTS, training=False)
    assert int(_np(sampled.sampling_step)) == 1


def test_scheduled_sampling_without_teacher_forcing_feeds_the_models_predictions():
    model = _model(seed=2, scheduled_sampling=dict(
        schedule="linear", k=1e-9, c=0.0, sampling="argmax"))
    logits = _np(model(INPUTS, training=True))
    # Feeding back the argmax at every step is the same as teacher forcing
    # on the model's own argmax sequence.
    own = np.concatenate([TARGET_IN[:, :1], logits.argmax(-1)[:, :-1]], axis=1)
    model.scheduled_sampling = None
    expected = _np(model({"source": SOURCE, "target": own}, training=True))
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_fit_with_scheduled_sampling_advances_the_schedule():
    model = _model(seed=3, scheduled_sampling=dict(schedule="inverse_sigmoid", k=2.0),
                   cell_options=dict(dropout=0.1, recurrent_dropout=0.1, zoneout=0.1),
                   embedding_dropout=0.1, output_dropout=0.1)
    model.compile(keras.optimizers.Adam(1e-2), keras_rnn.SequenceLoss())
    history = model.fit(INPUTS, TARGET_OUT, batch_size=3, epochs=4, verbose=0)
    assert int(_np(model.sampling_step)) == 4
    assert np.all(np.isfinite(history.history["loss"]))


# ------------------------------------------------ the two decoder paths


@pytest.mark.parametrize("options", [
    dict(cell="lstm", decoder_layers=2, encoder_layers=2),
    dict(cell="gru", attention="luong", attention_options={"score_mode": "general"},
         cell_options={"layer_norm": True}),
    dict(cell="simple_rnn", bidirectional=False, bridge="zeros", tie_embeddings=True),
    dict(cell="gru", decoder_type="conditional", cell_options={"layer_norm": True},
         tie_embeddings=True),
    dict(cell="lstm", decoder_type="conditional", decoder_layers=2),
])
def test_teacher_forcing_equals_stepping_the_decoder(options):
    """The fused teacher-forced loop and `decode_step` (used by the
    searches) compute the same logits and alignments."""
    model = _model(seed=4, **options)
    logits, alignments = model.teacher_forced(SOURCE, TARGET_IN)
    memory, state = model.encode(SOURCE)
    for t in range(TARGET_IN.shape[1]):
        step_logits, state = model.decode_step(
            ops.convert_to_tensor(TARGET_IN[:, t], "int32"), state, memory)
        np.testing.assert_allclose(_np(step_logits), _np(logits)[:, t], atol=1e-5)
        np.testing.assert_allclose(_np(state.alignments), _np(alignments)[:, t], atol=1e-6)
    # Padding of the source gets no attention.
    assert np.all(_np(alignments)[SOURCE[:, None, :].repeat(4, 1) == PAD] == 0.0)


def test_tied_embeddings_project_with_the_target_embedding():
    model = _model(seed=5, tie_embeddings=True, embedding_dim=6, units=8)
    names = [w.path for w in model.weights]
    assert not any("output_projection" in n for n in names)
    assert model.pre_output is not None  # units 8 != embedding 6
    logits, _ = model.teacher_forced(SOURCE, TARGET_IN)
    # Recompute the projection from the decoder outputs.
    x = model.target_embedding(TARGET_IN)
    memory, state = model.encode(SOURCE)
    output, _ = model.decoder.call(x[:, 0], state, memory)
    expected = (_np(output) @ _np(model.pre_output.kernel)
                @ _np(model.target_embedding.embeddings).T + _np(model.output_bias))
    np.testing.assert_allclose(_np(logits)[:, 0], expected, atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_computes_and_trains_like_float32(policy):
    """Under a mixed policy the recurrence runs in the low dtype through both
    `__call__` and `stateless_call` (which the JAX trainer uses and which
    opens no autocast scope), stays within rounding of float32, and trains
    to the same losses."""
    compute = policy.split("_")[1]
    reference = _model(seed=5, cell="lstm")
    expected = _np(reference(INPUTS))
    expected_ids = _np(reference.decode(SOURCE, method="greedy", max_length=6).ids)
    keras.config.set_dtype_policy(policy)
    model = _model(seed=5, cell="lstm")
    model.set_weights(reference.get_weights())
    assert model.compute_dtype == compute
    assert all(w.dtype in ("float32", "int32", "int64") for w in model.weights)
    called = model(INPUTS)
    stateless, _ = model.stateless_call(
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables], INPUTS)
    tolerance = 0.05 if compute == "bfloat16" else 5e-3
    for logits in (called, stateless):
        assert keras.backend.standardize_dtype(logits.dtype) == compute
        np.testing.assert_allclose(_np(logits).astype("float32"), expected, atol=tolerance)
    got_ids = _np(model.decode(SOURCE, method="greedy", max_length=6).ids)
    np.testing.assert_array_equal(got_ids, expected_ids)

    losses = []
    for m in (reference, model):
        m.compile(keras.optimizers.Adam(1e-2), keras_rnn.SequenceLoss())
        history = m.fit(INPUTS, TARGET_OUT, batch_size=3, epochs=15, verbose=0)
        losses.append(history.history["loss"])
    assert losses[0][-1] < 0.75 * losses[0][0]  # it learns
    np.testing.assert_allclose(losses[1], losses[0], rtol=5e-3)


def test_bad_configuration_names_the_argument():
    for kwargs, name in [
        (dict(cell="transformer"), "cell"),
        (dict(attention="monotonic"), "attention"),
        (dict(bridge="copy"), "bridge"),
        (dict(decoder_type="cgru"), "decoder_type"),
        (dict(pad_id=1), "different"),
        (dict(eos_id=20), "eos_id"),
        (dict(decoding={"beam": 3}), "decoding"),
        (dict(decoding={"beam_size": 0}), "beam_size"),
        (dict(embedding_dropout=1.5), "embedding_dropout"),
        (dict(units=0), "units"),
        (dict(embedding_dim=0), "embedding_dim"),
        (dict(encoder_layers=0), "encoder_layers"),
        (dict(max_source_length=-1), "max_source_length"),
    ]:
        with pytest.raises(ValueError, match=name):
            keras_rnn.Seq2Seq(11, 13, **kwargs)
    model = _model()
    with pytest.raises(ValueError, match="target token id 13"):
        model({"source": SOURCE, "target": np.array([[BOS, 13, 0, 0]] * 3)})
    with pytest.raises(ValueError, match="'source' and 'target'"):
        model({"source": SOURCE})


# --------------------------------------------------------------- saving


def test_save_and_load_keeps_outputs_and_decoding(tmp_path):
    model = _model(seed=6, cell="lstm", cell_options={"layer_norm": True},
                   scheduled_sampling=dict(schedule="exponential", k=0.99),
                   max_source_length=9,
                   decoding=dict(beam_size=3, n_best=2, max_length=7, min_length=2,
                                 length_penalty_alpha=0.6, coverage_penalty_beta=0.2))
    model.compile(keras.optimizers.Adam(1e-2), keras_rnn.SequenceLoss(label_smoothing=0.1))
    model.fit(INPUTS, TARGET_OUT, epochs=2, verbose=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.decoding == model.decoding
    assert loaded.max_source_length == 9
    assert loaded.scheduled_sampling.get_config() == model.scheduled_sampling.get_config()
    assert loaded.loss.label_smoothing == 0.1
    np.testing.assert_allclose(_np(loaded(INPUTS)), _np(model(INPUTS)), atol=0)
    for method in ("beam", "greedy"):
        before, after = model.decode(SOURCE, method=method), loaded.decode(SOURCE, method=method)
        for field in decoding.DecodeResult._fields:
            np.testing.assert_array_equal(getattr(after, field), getattr(before, field))
    # The saved settings are the defaults of every decoder: with EOS made the
    # likeliest token, only min_length=2 keeps hypotheses from ending at once.
    bias = loaded.output_layer.bias
    bias.assign(_np(bias) + 50.0 * np.eye(13)[EOS])
    assert loaded.decode(SOURCE).ids.shape == (3, 2, 7)
    np.testing.assert_array_equal(loaded.decode(SOURCE, method="greedy").lengths, 2)
    np.testing.assert_array_equal(_np(decoding.beam_search(loaded, SOURCE).lengths)[:, 0], 2)


def test_conditional_decoder_trains_with_dropout_and_saves(tmp_path):
    """The cGRU decoder (`decoder_type="conditional"`): two GRU cells, no
    input feeding; it trains with every kind of cell noise and comes back
    from a `.keras` file with the same outputs and beams."""
    model = _model(seed=7, decoder_type="conditional",
                   cell_options=dict(dropout=0.1, recurrent_dropout=0.1, zoneout=0.1),
                   embedding_dropout=0.1, output_dropout=0.1)
    assert not model.decoder.input_feeding
    assert model.decoder.conditional_cell.units == 8
    plain = _model(seed=7)
    # + the second transition, 3 gates x (context 10 + state 8 + 2 biases)
    # x 8; - the first one's kernel rows for the fed-back a_{t-1} (8 wide).
    assert model.count_params() - plain.count_params() == 3 * 8 * (10 + 8 + 2) - 3 * 8 * 8
    model.compile(keras.optimizers.Adam(1e-2), keras_rnn.SequenceLoss())
    history = model.fit(INPUTS, TARGET_OUT, batch_size=3, epochs=40, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.decoder_type == "conditional"
    np.testing.assert_allclose(_np(loaded(INPUTS)), _np(model(INPUTS)), atol=0)
    before, after = model.decode(SOURCE, beam_size=3), loaded.decode(SOURCE, beam_size=3)
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_allclose(after.scores, before.scores, atol=1e-6)


# ------------------------------------------------------------- learning


def _reverse_task(n, rng):
    """Digits (ids 3..12) in, the same digits reversed out."""
    return digit_task(n, rng, answer=lambda digits: digits[::-1], low=3, high=7)


@pytest.mark.parametrize("decoder_type", ["input_feeding", "conditional"])
def test_seq2seq_learns_to_reverse_digit_sequences(decoder_type):
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    source, target_in, target_out = _reverse_task(3000, rng)
    test_source, _, test_out = _reverse_task(300, rng)
    seen = {tuple(s) for s in source}
    held_out = np.array([tuple(s) not in seen for s in test_source])
    assert held_out.sum() > 250
    model = keras_rnn.Seq2Seq(13, 13, embedding_dim=32, units=64, encoder_units=32,
                              cell="gru", attention="luong", decoder_type=decoder_type,
                              decoding=dict(max_length=8, beam_size=3))
    steps = 5 * (3000 // 64 + 1)
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.05)
    model.compile(keras.optimizers.Adam(schedule, global_clipnorm=1.0),
                  keras_rnn.SequenceLoss())
    model.fit({"source": source, "target": target_in}, target_out,
              batch_size=64, epochs=5, verbose=0)
    for method in ("greedy", "beam"):
        ids = model.decode(test_source[held_out], method=method).ids[:, 0]
        exact = np.all(ids == test_out[held_out], axis=1).mean()
        assert exact >= 0.99, (method, exact)
