"""Shared test helpers: weight access by name and backend-agnostic gradients.

The suite runs once per backend: `KERAS_BACKEND=tensorflow pytest tests`,
`KERAS_BACKEND=jax pytest tests` and, without the serving tests,
`KERAS_BACKEND=torch pytest tests/keras_rnn tests/training tests/cli`
(`make test` runs all three).
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# `keras-rnn` commands run by the tests keep JAX's compiled programs here,
# not in the user's cache directory (`keras_rnn.cli.compile_cache_dir`).
os.environ["XDG_CACHE_HOME"] = os.path.join(tempfile.gettempdir(),
                                            f"keras-rnn-tests-{os.getuid()}", "cache")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()


def weight_key(variable):
    """'lstm/lstm_cell/kernel_norm/gamma' -> 'kernel_norm/gamma'."""
    parts = variable.path.split("/")
    if len(parts) >= 2 and parts[-2].endswith("_norm"):
        return "/".join(parts[-2:])
    return parts[-1]


def randomize_weights(layer, seed=0, scale=0.5):
    """Gives every weight of `layer` a fixed random value; returns them as a
    float64 dict keyed by `weight_key` (gammas stay near 1)."""
    rng = np.random.default_rng(seed)
    values = {}
    for variable in layer.weights:
        key = weight_key(variable)
        value = rng.normal(scale=scale, size=variable.shape)
        if key.endswith("gamma"):
            value = 1.0 + 0.2 * value
        variable.assign(value.astype(variable.dtype))
        values[key] = value
    return values


def gradients(layer, inputs, probe, training=False):
    """d sum(layer(inputs) * probe) / d weights, as a dict like
    `randomize_weights`'s. `layer` must return one tensor."""
    variables = layer.trainable_variables
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(inputs, training=training) * probe)
        grads = tape.gradient(loss, variables)
    elif BACKEND == "jax":
        import jax

        non_trainable = [v.value for v in layer.non_trainable_variables]

        def loss_fn(trainable):
            out, _ = layer.stateless_call(
                trainable, non_trainable, inputs, training=training
            )
            return (out * probe).sum()

        grads = jax.grad(loss_fn)([v.value for v in variables])
    elif BACKEND == "torch":
        import torch

        out = layer(inputs, training=training)
        loss = keras.ops.sum(out * keras.ops.convert_to_tensor(probe, out.dtype))
        grads = [g.detach().cpu()
                 for g in torch.autograd.grad(loss, [v.value for v in variables])]
    else:
        raise NotImplementedError(BACKEND)
    return {
        weight_key(v): np.asarray(g, dtype="float64")
        for v, g in zip(variables, grads)
    }


def numeric_gradients(loss_fn, weights, eps=1e-6):
    """Central differences of `loss_fn(weights)` over every weight entry."""
    grads = {}
    for key, value in weights.items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            saved = value[index]
            value[index] = saved + eps
            plus = loss_fn(weights)
            value[index] = saved - eps
            minus = loss_fn(weights)
            value[index] = saved
            grad[index] = (plus - minus) / (2 * eps)
        grads[key] = grad
    return grads


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()


# ------------------------------------------------ a trained, exported model


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny translator trained by `keras-rnn train` on this backend."""
    from tests.support import MULTI30K, cli, write_config

    if not MULTI30K.exists():
        pytest.skip("no shared Multi30k copy")
    directory = tmp_path_factory.mktemp("trained")
    cli("train", write_config(directory, "tiny"))
    return directory / "tiny"


@pytest.fixture(scope="session")
def exported_model(trained_run, tmp_path_factory):
    """`keras-rnn export` of `trained_run` (always on TensorFlow, whatever
    backend trained it): the model base directory holding `tiny/1/`."""
    from tests.support import cli

    base = tmp_path_factory.mktemp("models")
    cli("export", trained_run, base, "--max-beam-size", "3")  # on JAX too: export switches
    return base
