"""int8 inference (`Seq2Seq.quantize("int8")`) against float32 on a trained run.

    KERAS_BACKEND=tensorflow .venv/bin/python benchmarks/bench_int8.py /tmp/q2/mt1536-s1
    KERAS_BACKEND=jax .venv/bin/python benchmarks/bench_int8.py RUN --sentences 200

Loads the run's `model/model.keras` twice, quantizes one copy (embeddings,
`Dense` layers by Keras; the recurrent cells' kernels and recurrent kernels
by keras_rnn: per-output-channel abs-max int8, inputs quantized per row,
int8 x int8 -> int32), translates the first `--sentences` sentences of the
run's test split with greedy search and beam search with both, and prints
cased sacreBLEU, greedy ids equal to the float model's, the relative error of
the teacher-forced logits on those sentences, and sentences per second of
compiled greedy decoding (compilation excluded: each decoder is warmed on the
same batches first; the best of `--repeats`).
"""

import argparse
import json
import time

import keras
import numpy as np

from keras_rnn.training import data as data_lib
from keras_rnn.training.evaluate import Translator, bleu_scores, translate_ids
from keras_rnn.training.pipeline import pad_rows
from keras_rnn.training.tokenizer import add_eos


def _greedy_speed(model, sources, batch_size, repeats):
    source = pad_rows(sources)
    model.decode(source, method="greedy", batch_size=batch_size)  # warm
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.decode(source, method="greedy", batch_size=batch_size)
        best = min(best, time.perf_counter() - start)
    return len(sources) / best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-beam", action="store_true")
    args = parser.parse_args()

    float_t = Translator(args.run_dir)
    int8_t = Translator(args.run_dir)
    int8_t.model.quantize("int8")
    d = float_t.config.data
    sources, references = data_lib.read_parallel(
        *data_lib.corpus_paths(d.dir, d.test_split, d.source_lang, d.target_lang))
    sources, references = sources[: args.sentences], references[: args.sentences]
    source_ids = add_eos(float_t.source_tokenizer.encode(sources))

    report = {"backend": keras.backend.backend(), "sentences": len(sources),
              "split": d.test_split}
    greedy_ids = {}
    for name, t in (("float32", float_t), ("int8", int8_t)):
        hyps, result = translate_ids(t.model, t.target_tokenizer, source_ids,
                                     method="greedy", batch_size=args.batch_size)
        greedy_ids[name] = np.asarray(result.ids)[:, 0]
        report[f"{name}_greedy_bleu"] = bleu_scores(hyps, references)["bleu"]
        if not args.no_beam:
            hyps, _ = translate_ids(t.model, t.target_tokenizer, source_ids,
                                    method="beam", batch_size=args.batch_size)
            report[f"{name}_beam_bleu"] = bleu_scores(hyps, references)["bleu"]
        report[f"{name}_greedy_sentences_per_s"] = round(
            _greedy_speed(t.model, source_ids, args.batch_size, args.repeats), 1)
    a, b = greedy_ids["float32"], greedy_ids["int8"]
    width = min(a.shape[1], b.shape[1])
    report["greedy_sentences_identical"] = int(
        sum(np.array_equal(x, y) for x, y in zip(a[:, :width], b[:, :width])))
    report["greedy_tokens_equal"] = round(float(np.mean(a[:, :width] == b[:, :width])), 4)

    # Teacher-forced logits on the float model's own greedy output.
    batch = {"source": pad_rows(source_ids[:32]),
             "target": np.concatenate(
                 [np.full((min(32, len(a)), 1), float_t.model.bos_id), a[:32, :-1]], axis=1)}
    lf = np.asarray(keras.ops.convert_to_numpy(float_t.model(batch)))
    lq = np.asarray(keras.ops.convert_to_numpy(int8_t.model(batch)))
    report["logits_relative_error"] = round(
        float(np.linalg.norm(lq - lf) / np.linalg.norm(lf)), 5)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
