"""A two-minute demo: keras_rnn layers learn the adding problem.

    make demo                      # or, with the package installed:
    python examples/adding_problem.py
    KERAS_BACKEND=jax python examples/adding_problem.py --steps 40

The adding problem (Hochreiter & Schmidhuber 1997): each input sequence has
`length` steps of two features, a random value in [0, 1) and a marker that is
1 at exactly two steps and 0 elsewhere; the target is the sum of the two
marked values. Predicting the mean target (1.0) scores a mean squared error
of about 0.167; a model has to remember the marked values across the
sequence to do better. The demo trains a layer-normalized LSTM with
variational dropout and zoneout, and a layer-normalized GRU, then prints
their held-out error next to that baseline and a few worked examples.
"""

import argparse
import time

import numpy as np

import keras

import keras_rnn


def adding_problem(num, length, rng):
    """Returns `(x, y)`: x `(num, length, 2)` float32, y `(num, 1)`."""
    values = rng.random((num, length)).astype("float32")
    markers = np.zeros((num, length), dtype="float32")
    for row in range(num):
        first, second = rng.choice(length, size=2, replace=False)
        markers[row, [first, second]] = 1.0
    x = np.stack([values, markers], axis=-1)  # (num, length, 2)
    y = (values * markers).sum(axis=1, keepdims=True)
    return x, y


def build_model(layer, length):
    inputs = keras.Input((length, 2))
    hidden = layer(inputs)
    outputs = keras.layers.Dense(1)(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=30)
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x_train, y_train = adding_problem(args.train, args.length, rng)
    x_test, y_test = adding_problem(1000, args.length, rng)
    baseline = float(np.mean((y_test - y_train.mean()) ** 2))

    print(f"keras_rnn {keras_rnn.__version__} on the {keras.backend.backend()} "
          f"backend: the adding problem, sequences of {args.length} steps")
    print(f"predicting the mean scores MSE {baseline:.4f}")
    layers = {
        "LSTM(layer_norm, recurrent_dropout, zoneout)": keras_rnn.LSTM(
            args.units, layer_norm=True, recurrent_dropout=0.1,
            zoneout=0.05, zoneout_cell=0.05, seed=args.seed,
        ),
        "GRU(layer_norm)": keras_rnn.GRU(args.units, layer_norm=True),
    }
    for name, layer in layers.items():
        model = build_model(layer, args.length)
        start = time.perf_counter()
        model.fit(x_train, y_train, batch_size=64, epochs=args.epochs,
                  verbose=0)
        seconds = time.perf_counter() - start
        mse = float(model.evaluate(x_test, y_test, verbose=0))
        print(f"{name:46s} test MSE {mse:.4f} "
              f"({baseline / mse:.0f}x better than the mean) "
              f"after {args.epochs} epochs, {seconds:.0f} s")
    predictions = model.predict(x_test[:3], verbose=0)
    for x, y, p in zip(x_test[:3], y_test[:3], predictions):
        a, b = x[x[:, 1] == 1.0, 0]
        print(f"  {a:.2f} + {b:.2f} = {y[0]:.2f}; the GRU says {p[0]:.2f}")


if __name__ == "__main__":
    main()
