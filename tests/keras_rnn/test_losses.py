"""keras_rnn.losses: SequenceLoss against NumPy and Keras."""

import numpy as np
import pytest

import keras
from keras import ops

import keras_rnn

PAD, EOS = 0, 2
TARGET_OUT = np.array([[5, 6, 7, EOS], [9, 10, EOS, 0], [3, EOS, 0, 0]])


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_sequence_loss_is_the_masked_token_mean(smoothing):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 13)).astype("float32")
    loss = keras_rnn.SequenceLoss(label_smoothing=smoothing)
    got = float(_np(loss(TARGET_OUT, logits)))
    # NumPy: q = (1 - eps) onehot + eps / V, mean over the 9 real tokens.
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    q = (1 - smoothing) * np.eye(13)[TARGET_OUT] + smoothing / 13
    per_token = -(q * log_p).sum(-1)
    mask = TARGET_OUT != PAD
    np.testing.assert_allclose(got, per_token[mask].mean(), rtol=1e-5)
    # Keras's own categorical cross-entropy on the real tokens agrees.
    reference = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=smoothing)
    np.testing.assert_allclose(
        got, float(_np(reference(np.eye(13)[TARGET_OUT][mask], logits[mask]))), rtol=1e-5)
    # Sample weights weight sentences; padding still does not count.
    weights = np.array([1.0, 0.0, 2.0])
    got = float(_np(loss(TARGET_OUT, logits, sample_weight=weights)))
    w = mask * weights[:, None]
    np.testing.assert_allclose(got, (per_token * w).sum() / w.sum(), rtol=1e-5)


def test_sequence_loss_config_and_errors():
    loss = keras_rnn.SequenceLoss(pad_id=3, label_smoothing=0.2)
    clone = keras_rnn.SequenceLoss.from_config(loss.get_config())
    assert (clone.pad_id, clone.label_smoothing) == (3, 0.2)
    with pytest.raises(ValueError, match="label_smoothing"):
        keras_rnn.SequenceLoss(label_smoothing=1.0)




def _gradient(fn, x):
    """d fn(x) / dx on the current backend, as NumPy."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.Variable(x)
        with tf.GradientTape() as tape:
            value = fn(x)
        return tape.gradient(value, x).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(fn)(x))
    import torch

    x = torch.tensor(x, requires_grad=True)
    fn(x).backward()
    return x.grad.numpy()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_sequence_loss_gradient_is_softmax_minus_target(smoothing):
    # The fused softmax cross-entropy (TensorFlow's kernel returns its own
    # gradient) against the closed form d l / d z = (softmax(z) - q) w / sum(w).
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 4, 13)).astype("float32")
    loss = keras_rnn.SequenceLoss(label_smoothing=smoothing)
    got = _gradient(lambda z: loss(TARGET_OUT, z), logits)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    q = (1 - smoothing) * np.eye(13)[TARGET_OUT] + smoothing / 13
    mask = (TARGET_OUT != PAD)[..., None]
    np.testing.assert_allclose(got, (p - q) * mask / mask.sum(), atol=1e-6)


def test_sequence_loss_on_probabilities():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 4, 13)).astype("float32")
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    from_logits = keras_rnn.SequenceLoss(label_smoothing=0.1)
    from_probs = keras_rnn.SequenceLoss(label_smoothing=0.1, from_logits=False)
    np.testing.assert_allclose(float(_np(from_probs(TARGET_OUT, probs))),
                               float(_np(from_logits(TARGET_OUT, logits))), rtol=1e-5)
