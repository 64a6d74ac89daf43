"""A one-minute seq2seq demo: an attention model learns to sort digits.

    make demo                      # runs this after the adding problem
    python examples/sort_digits.py
    KERAS_BACKEND=jax python examples/sort_digits.py --epochs 8

Source: 3 to 9 random digits; target: the same digits sorted. A
`keras_rnn.Seq2Seq` (bidirectional GRU encoder, Bahdanau attention, GRU
decoder with input feeding) is trained with teacher forcing and label
smoothing through `fit`, then decodes held-out sequences with greedy search
and with beam search (beam 4, GNMT length penalty) in one compiled loop each.
The demo prints exact-match accuracy, the 2-best list of a few examples, and
the attention alignment of one of them: each output digit attends to where
that digit sits in the source.
"""

import argparse
import time

import numpy as np

import keras

import keras_rnn

PAD, BOS, EOS = 0, 1, 2
DIGIT = 3  # id of digit 0


def digit_task(num, rng, answer=np.sort, low=3, high=9):
    """A synthetic seq2seq task over digit sequences of `low` to `high` digits.

    Args:
        num: number of examples.
        rng: a NumPy `Generator`.
        answer: maps a source digit-id sequence to its target (the demo
            sorts; the tests reverse).
        low, high: shortest and longest source.

    Returns:
        `(source, target_in, target_out)` int32 id matrices: the padded
        source, the decoder input `[bos, y...]` and the labels `[y..., eos]`.
    """
    lengths = rng.integers(low, high + 1, num)
    source = np.zeros((num, high), "int32")
    target_in = np.zeros((num, high + 1), "int32")
    target_out = np.zeros((num, high + 1), "int32")
    for i, length in enumerate(lengths):
        digits = rng.integers(0, 10, length) + DIGIT
        target = answer(digits)
        source[i, :length] = digits
        target_in[i, 0], target_in[i, 1:length + 1] = BOS, target
        target_out[i, :length], target_out[i, length] = target, EOS
    return source, target_in, target_out


def text(ids):
    return " ".join(str(i - DIGIT) for i in ids if i >= DIGIT)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    source, target_in, target_out = digit_task(args.train, rng)
    test_source, _, test_out = digit_task(1000, rng)
    model = keras_rnn.Seq2Seq(
        13, 13, embedding_dim=32, units=64, encoder_units=32, cell="gru",
        attention="bahdanau",
        decoding=dict(beam_size=4, n_best=2, max_length=10,
                      length_penalty_alpha=0.6),
    )
    steps = args.epochs * -(-args.train // 64)
    model.compile(
        keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.05),
                              global_clipnorm=1.0),
        keras_rnn.SequenceLoss(label_smoothing=0.05),
    )
    print(f"keras_rnn {keras_rnn.__version__} on the {keras.backend.backend()} "
          f"backend: sorting 3-9 digits with attention")
    start = time.perf_counter()
    model.fit({"source": source, "target": target_in}, target_out,
              batch_size=64, epochs=args.epochs, verbose=0)
    print(f"trained {model.count_params():,} parameters for {args.epochs} epochs "
          f"on {args.train} examples in {time.perf_counter() - start:.0f} s")
    for method in ("greedy", "beam"):
        start = time.perf_counter()
        result = model.decode(test_source, method=method)
        seconds = time.perf_counter() - start
        exact = np.all(result.ids[:, 0, :test_out.shape[1]] == test_out, axis=1).mean()
        print(f"{method:6s} exact match on 1000 held-out sequences: {exact:.1%} "
              f"({seconds:.1f} s, compiling included)")
    for i in range(3):
        hyps = "; ".join(
            f"{text(ids)} ({score:.3f})"
            for ids, score in zip(result.ids[i], result.scores[i])
        )
        print(f"  {text(test_source[i]):18s} -> {hyps}")
    i, length = 0, int(result.lengths[0, 0])
    src = [t for t in test_source[i] if t != PAD]
    print("attention of the best hypothesis (rows: output, columns: source, x: weight > 0.3)")
    print("       " + " ".join(text([t]) for t in src))
    for step in range(length):
        token = result.ids[i, 0, step]
        row = " ".join("x" if w > 0.3 else "." for w in result.alignments[i, 0, step, :len(src)])
        print(f"  {text([token]) if token != EOS else '</s>':>4s} {row}")


if __name__ == "__main__":
    main()
