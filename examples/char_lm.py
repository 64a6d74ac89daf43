"""A character-level language model trained with truncated BPTT.

    python examples/char_lm.py                   # Multi30k English captions
    python examples/char_lm.py --text FILE --chunk-length 100 --epochs 10
    KERAS_BACKEND=jax python examples/char_lm.py

The classic stateful language-model layout (Zaremba et al. 2014; Karpathy's
char-rnn): the text is cut into `--batch-size` contiguous streams, stream
`i` being row `i` of every batch, and each stream is read in chunks of
`--chunk-length` characters. `keras_rnn.TBPTTSequence` serves the chunks in
order, `keras_rnn.StatefulRNN` carries the LSTM's state from one chunk into
the next, and `keras_rnn.TBPTTResetStates` zeroes it at every epoch start:
the model reads each stream from its beginning while gradients reach back at
most one chunk, one update per chunk (TBPTT(k, k), Williams & Peng 1990).

It prints the training loss and the bits per character (bpc, the mean of
`-log2 p(next char)`) on a held-out tail of the text after every epoch, next
to a unigram model's bpc (each character's frequency in the training part),
then samples some text.

Without `--text` it reads `../shared/data/multi30k/train.en` next to the
repository when that exists (Multi30k: non-commercial research and
education only; it is read in place, never copied).
"""

import argparse
import math
import pathlib
import time

import numpy as np

import keras

import keras_rnn

DEFAULT_TEXT = (
    pathlib.Path(__file__).resolve().parents[1].parent
    / "shared" / "data" / "multi30k" / "train.en"
)


def streams(ids, batch_size):
    """Cuts `ids` into `batch_size` contiguous streams of inputs and targets.

    Args:
        ids: 1-D int array, the encoded text.
        batch_size: number of streams.

    Returns:
        `(x, y)`, both `(batch_size, length)`: stream `i` is
        `ids[i * length:(i + 1) * length]` and `y` is `x` shifted by one
        character (the next character to predict).
    """
    length = (len(ids) - 1) // batch_size
    if length < 1:
        raise ValueError(
            f"Argument `batch_size` ({batch_size}) leaves no text per stream "
            f"for a text of {len(ids)} characters."
        )
    x = ids[:batch_size * length].reshape(batch_size, length)
    y = ids[1:batch_size * length + 1].reshape(batch_size, length)
    return x, y


def unigram_bpc(train_ids, test_ids, vocab_size):
    """Bits per character of `test_ids` under the add-one-smoothed character
    frequencies of `train_ids`."""
    counts = np.bincount(train_ids, minlength=vocab_size) + 1.0
    log2_p = np.log2(counts / counts.sum())
    return float(-log2_p[test_ids].mean())


def build_model(vocab_size, batch_size, units, embedding, layers=None):
    """Embedding -> StatefulRNN(LSTM) -> Dense logits, at a fixed batch size.

    Pass the `layers` of a trained model to get another model (e.g. batch
    size 1, for sampling) sharing its weights.
    """
    if layers is None:
        lstm = keras_rnn.LSTM(units, return_sequences=True)
        layers = (keras.layers.Embedding(vocab_size, embedding), lstm,
                  keras.layers.Dense(vocab_size))
    embed, lstm, logits = layers
    inputs = keras.Input(batch_shape=(batch_size, None), dtype="int32")
    hidden = keras_rnn.StatefulRNN(lstm)(embed(inputs))  # (batch, time, units)
    model = keras.Model(inputs, logits(hidden))  # (batch, time, vocab)
    return model, layers


class PrintEpoch(keras.callbacks.Callback):
    """Prints the training loss and the held-out bpc after every epoch."""

    def __init__(self, baseline):
        super().__init__()
        self.baseline = baseline
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.start
        bpc = logs["val_loss"] / math.log(2)
        print(f"epoch {epoch + 1:2d}: train loss {logs['loss']:.3f} nats "
              f"({logs['loss'] / math.log(2):.3f} bpc), held-out "
              f"{bpc:.3f} bpc (unigram {self.baseline:.3f}), {seconds:.0f} s",
              flush=True)


def sample(layers, vocab, prime, length, temperature, rng):
    """Feeds `prime`, then draws `length` characters one at a time."""
    model, _ = build_model(len(vocab), 1, None, None, layers=layers)
    index = {c: i for i, c in enumerate(vocab)}
    ids = [index[c] for c in prime if c in index] or [0]
    logits = model(np.array([ids], dtype="int32"))[0, -1]  # (vocab,)
    text = []
    for _ in range(length):
        logits = np.asarray(logits, dtype="float64") / temperature
        p = np.exp(logits - logits.max())
        next_id = int(rng.choice(len(vocab), p=p / p.sum()))
        text.append(vocab[next_id])
        logits = model(np.array([[next_id]], dtype="int32"))[0, -1]
    return prime + "".join(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=pathlib.Path, default=None,
                        help=f"UTF-8 text file (default: {DEFAULT_TEXT})")
    parser.add_argument("--max-chars", type=int, default=500_000,
                        help="use the first N characters (0: all)")
    parser.add_argument("--held-out", type=float, default=0.1,
                        help="fraction of the text, at its end, held out")
    parser.add_argument("--chunk-length", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32,
                        help="parallel streams")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--embedding", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--sample-length", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--prime", default="A ")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    path = args.text
    if path is None:
        if not DEFAULT_TEXT.exists():
            parser.error(f"no --text given and {DEFAULT_TEXT} does not exist")
        path = DEFAULT_TEXT
    text = path.read_text(encoding="utf-8")
    if args.max_chars:
        text = text[:args.max_chars]
    if not 0 < args.held_out < 1:
        parser.error("--held-out must be in (0, 1)")

    keras.utils.set_random_seed(args.seed)
    vocab = sorted(set(text))
    lookup = {c: i for i, c in enumerate(vocab)}
    ids = np.fromiter((lookup[c] for c in text), dtype="int32", count=len(text))
    split = int(len(ids) * (1 - args.held_out))
    train_ids, test_ids = ids[:split], ids[split:]
    baseline = unigram_bpc(train_ids, test_ids[1:], len(vocab))

    x, y = streams(train_ids, args.batch_size)
    x_test, y_test = streams(test_ids, args.batch_size)
    train = keras_rnn.TBPTTSequence(
        x, y, batch_size=args.batch_size, chunk_length=args.chunk_length,
        remainder="drop")
    test = keras_rnn.TBPTTSequence(
        x_test, y_test, batch_size=args.batch_size,
        chunk_length=args.chunk_length, remainder="drop")

    print(f"keras_rnn {keras_rnn.__version__} on the {keras.backend.backend()} "
          f"backend: a character LSTM language model on {path.name}")
    print(f"{len(text):,} characters, {len(vocab)} distinct; training on the "
          f"first {len(train_ids):,}, held out: the last {len(test_ids):,}")
    print(f"{args.batch_size} streams of {x.shape[1]:,} characters, read in "
          f"chunks of {args.chunk_length}: {len(train)} updates per epoch, "
          f"gradients through at most {args.chunk_length} steps")
    print(f"unigram baseline: {baseline:.3f} bits per character")

    model, layers = build_model(len(vocab), args.batch_size, args.units,
                                args.embedding)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(
        train, validation_data=test, epochs=args.epochs, shuffle=False,
        verbose=0,
        callbacks=[keras_rnn.TBPTTResetStates(train, test),
                   PrintEpoch(baseline)],
    )
    bpc = model.evaluate(test, callbacks=[keras_rnn.TBPTTResetStates(test)],
                         verbose=0) / math.log(2)
    # The same model with its state zeroed before every chunk instead: what
    # the carried state is worth.
    reset_every_chunk = keras.callbacks.LambdaCallback(
        on_test_batch_begin=lambda batch, logs: keras_rnn.reset_rnn_states(
            model))
    reset_bpc = model.evaluate(test, callbacks=[reset_every_chunk],
                               verbose=0) / math.log(2)
    print(f"held-out: {bpc:.3f} bpc ({baseline / bpc:.2f}x fewer bits than the "
          f"unigram model); {reset_bpc:.3f} bpc with the state reset at every "
          "chunk instead of carried")

    rng = np.random.default_rng(args.seed)
    print(f"sample (temperature {args.temperature}):")
    print(sample(layers, vocab, args.prime, args.sample_length,
                 args.temperature, rng))
    return bpc


if __name__ == "__main__":
    main()
