"""The FLOP ceiling of beam-search serving on this CPU.

    KERAS_BACKEND=tensorflow python benchmarks/bench_flops.py \
        --export models/quick/1 --run runs/quick [--beam-size 5] [--rows 160] \
        [--output flops.json]

Three numbers, and the ceiling they give:

1. Peak float32 FLOP/s of this CPU, measured with TensorFlow matmuls (the
   library the server runs on, with its default threads): a large square
   product (2048^3) that reaches the peak, and the products the decoder
   really runs at `--rows` rows (a batch of 32 sentences x beam 5 = 160:
   the GRU cell's input and recurrent kernels, the attention query and
   attention layer, the output projection). Small products do not reach
   the peak, so both are reported; "decoder-size" is the FLOP-weighted mix
   of the decoder's products (their FLOPs over their summed time).
2. FLOPs of beam-search decoding of one sentence, counted from the weight
   shapes stored in the SavedModel (`variables/`): per source token the
   encoder (bi-GRU, the attention's memory projection), once the bridge,
   and per decoder step and beam the GRU cell, the attention (query,
   scores over the S source positions, softmax, context), the attention
   layer, the output projection (which dominates), the log-softmax and
   the beam's scoring and top-k. A multiply-add counts 2; elementwise
   ops, comparisons and transcendental functions count 1. Applied to the
   test sentences (SentencePiece tokens of the run's source model plus
   EOS) with the decoder steps each sentence's search takes on its own:
   the search stops when all `beam` hypotheses have ended, so a sentence
   alone takes max(length of its final hypotheses) steps, read from the
   run's own beam search (`n_best = beam`, which selects, not searches).
3. Ceiling = FLOP/s / mean FLOPs per sentence, in sentences/s.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MULTI30K = Path(os.environ.get("MULTI30K_DIR", ROOT.parent / "shared" / "data" / "multi30k"))


# ------------------------------------------------------------ model shapes

def model_dims(export):
    """The quick model's sizes, read from a SavedModel's variable shapes.

    Returns:
        dict: `E` source/target embedding, `He` encoder units a direction,
        `U` decoder units, `A` attention units, `Uatt` attention layer
        width, `V` target vocabulary, `Cin` decoder cell input width.
    """
    import tensorflow as tf

    shapes = {name.split("/.ATTRIBUTES")[0]: shape
              for name, shape in tf.train.list_variables(str(Path(export) / "variables" /
                                                               "variables"))}

    def shape(suffix):
        (match,) = [s for name, s in shapes.items() if name.endswith(suffix)]
        return match

    e, three_he = shape("encoder_rnns/0/forward_layer/cell/kernel")
    cin, three_u = shape("decoder/cells/0/kernel")
    two_he, a = shape("attention_mechanism/memory_kernel")
    att_in, uatt = shape("decoder/attention_layer/_kernel")
    uatt_out, v = shape("output_layer/_kernel")
    assert uatt == uatt_out and two_he == 2 * three_he // 3 and att_in == three_u // 3 + two_he
    return {"E": e, "He": three_he // 3, "U": three_u // 3, "A": a, "Uatt": uatt, "V": v,
            "Cin": cin, "bridge": shape("bridge_layers/0/_kernel")}


def gru_flops(inputs, units):
    """One GRU step: input and recurrent kernels (3 gates), biases, gates."""
    return 2 * inputs * 3 * units + 2 * units * 3 * units + 2 * 3 * units + 10 * units


def encoder_flops(d, source_len):
    """Encoder FLOPs of one sentence: bi-GRU and memory keys per token, bridge."""
    per_token = 2 * gru_flops(d["E"], d["He"]) + 2 * (2 * d["He"]) * d["A"]
    bridge_in, bridge_out = d["bridge"]
    return source_len * per_token + 2 * bridge_in * bridge_out + 2 * bridge_out


def step_flops(d, source_len, beam):
    """FLOPs of one decoder step of one sentence (all `beam` hypotheses).

    Returns:
        dict of component -> FLOPs.
    """
    s, a, v = source_len, d["A"], d["V"]
    memory_width = 2 * d["He"]
    parts = {
        "gru_cell": gru_flops(d["Cin"], d["U"]),
        "attention_query": 2 * d["U"] * a,
        # keys + query, tanh, v . (.), softmax over S (exp, sum, divide)
        "attention_scores": s * (a + a + 2 * a) + 3 * s,
        "attention_context": 2 * s * memory_width,
        "attention_layer": 2 * (d["U"] + memory_width) * d["Uatt"],
        "output_projection": 2 * d["Uatt"] * v + v,
        "log_softmax": 4 * v,  # max, exp, sum, subtract
        # restrict, + cumulative log p, / length penalty, top-k compare
        "beam_topk": 4 * v,
    }
    return {name: beam * value for name, value in parts.items()}


def sentence_flops(d, source_len, steps, beam):
    """FLOPs of beam search over one sentence that takes `steps` steps."""
    return encoder_flops(d, source_len) + steps * sum(step_flops(d, source_len, beam).values())


# ------------------------------------------------------------ test sentences

def test_lengths(run, split, beam, batch_size):
    """Source lengths (pieces + EOS) and decoder steps of every test sentence.

    Returns:
        `(source_lengths, steps_alone, best_lengths)` lists: the steps a
        sentence's search takes alone (the longest of its `beam` final
        hypotheses) and the length of its best hypothesis (with EOS).
    """
    import numpy as np

    from keras_rnn.training.evaluate import Translator
    from keras_rnn.training.tokenizer import add_eos

    lang = "de"
    sentences = (MULTI30K / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
    translator = Translator(run)
    ids = add_eos(translator.source_tokenizer.encode(sentences))
    source_lengths = [len(row) for row in ids]
    _, result = translator.translate(sentences, batch_size=batch_size, beam_size=beam,
                                     n_best=beam)
    lengths = np.asarray(result.lengths)  # (N, beam)
    return source_lengths, lengths.max(1).tolist(), lengths[:, 0].tolist()


# ------------------------------------------------------------ matmuls

def matmul_flops_per_s(m, k, n, seconds=2.0, rounds=3, copies=4):
    """float32 (m x k) @ (k x n) with TensorFlow: the best round's FLOP/s.

    `copies` independent products per call (different left operands, so
    none is folded away) spread the call overhead.
    """
    import tensorflow as tf

    left = [tf.random.normal((m, k), seed=i) for i in range(copies)]
    right = tf.random.normal((k, n), seed=copies)
    products = tf.function(lambda: [tf.linalg.matmul(x, right) for x in left])
    products()
    best = 0.0
    for _ in range(rounds):
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / rounds:
            outputs = products()
            calls += 1
        outputs[-1].numpy()
        elapsed = time.perf_counter() - start
        best = max(best, 2 * m * k * n * copies * calls / elapsed)
    return best


def decoder_matmuls(d, rows):
    """The decoder step's products at `rows` rows: (name, m, k, n)."""
    return [
        ("gru_input_kernel", rows, d["Cin"], 3 * d["U"]),
        ("gru_recurrent_kernel", rows, d["U"], 3 * d["U"]),
        ("attention_query", rows, d["U"], d["A"]),
        ("attention_layer", rows, d["U"] + 2 * d["He"], d["Uatt"]),
        ("output_projection", rows, d["Uatt"], d["V"]),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export", required=True, help="a SavedModel version directory")
    parser.add_argument("--run", required=True, help="the run it was exported from")
    parser.add_argument("--split", default="test_2016_flickr")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--rows", type=int, default=160,
                        help="decoder rows of the matmul benchmark (sentences x beam)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="sentences a decode call, to read the output lengths")
    parser.add_argument("--seconds", type=float, default=3.0, help="per matmul shape")
    parser.add_argument("--output", default=None, help="JSON results file")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    d = model_dims(args.export)
    print(f"model: {d}", flush=True)
    peak = matmul_flops_per_s(2048, 2048, 2048, args.seconds)
    print(f"matmul 2048x2048x2048: {peak / 1e9:.1f} GFLOP/s", flush=True)
    matmuls, flops, seconds = [], 0, 0.0
    for name, m, k, n in decoder_matmuls(d, args.rows):
        rate = matmul_flops_per_s(m, k, n, args.seconds)
        matmuls.append({"name": name, "m": m, "k": k, "n": n, "gflop_per_s": round(rate / 1e9, 1)})
        flops += 2 * m * k * n
        seconds += 2 * m * k * n / rate
        print(f"matmul ({m}x{k})x({k}x{n}) {name}: {rate / 1e9:.1f} GFLOP/s", flush=True)
    decoder_rate = flops / seconds
    print(f"decoder-size mix at {args.rows} rows: {decoder_rate / 1e9:.1f} GFLOP/s", flush=True)

    source_lengths, steps, best = test_lengths(args.run, args.split, args.beam_size,
                                               args.batch_size)
    per_sentence = np.array([sentence_flops(d, s, t, args.beam_size)
                             for s, t in zip(source_lengths, steps)], dtype=float)
    per_best = np.array([sentence_flops(d, s, t, args.beam_size)
                         for s, t in zip(source_lengths, best)], dtype=float)
    mean_s = float(np.mean(source_lengths))
    breakdown = step_flops(d, round(mean_s), args.beam_size)
    step_total = sum(breakdown.values())
    mean_flops = float(per_sentence.mean())
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "backend": f"tensorflow {tf.__version__}", "model": d, "beam_size": args.beam_size,
        "peak_gflop_per_s": round(peak / 1e9, 1),
        "decoder_matmuls": matmuls, "decoder_gflop_per_s": round(decoder_rate / 1e9, 1),
        "sentences": len(source_lengths), "mean_source_tokens": round(mean_s, 2),
        "mean_steps_alone": round(float(np.mean(steps)), 2),
        "mean_best_length": round(float(np.mean(best)), 2),
        "step_flops_at_mean_source": breakdown,
        "encoder_flops_at_mean_source": encoder_flops(d, round(mean_s)),
        "mflops_per_sentence": round(mean_flops / 1e6, 2),
        "mflops_per_sentence_best_length_only": round(float(per_best.mean()) / 1e6, 2),
        "ceiling_sentences_per_s_peak": round(peak / mean_flops, 1),
        "ceiling_sentences_per_s_decoder": round(decoder_rate / mean_flops, 1),
    }
    print(f"{len(source_lengths)} sentences: {mean_s:.2f} source tokens, "
          f"{results['mean_steps_alone']} decoder steps alone "
          f"(best hypothesis {results['mean_best_length']} tokens) on average")
    print(f"one decoder step, beam {args.beam_size}, S={round(mean_s)}: "
          f"{step_total / 1e6:.2f} MFLOP, of which "
          + ", ".join(f"{k} {100 * v / step_total:.1f}%" for k, v in breakdown.items()))
    print(f"FLOPs a sentence: {results['mflops_per_sentence']} MFLOP "
          f"({results['mflops_per_sentence_best_length_only']} MFLOP counting only the "
          f"best hypothesis's length)")
    print(f"ceiling: {results['ceiling_sentences_per_s_peak']} sentences/s at the 2048^3 peak, "
          f"{results['ceiling_sentences_per_s_decoder']} sentences/s at the decoder-size rate")
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
