"""Checkpoint averaging, beam size and length penalty, chosen on the validation split.

    KERAS_BACKEND=tensorflow python benchmarks/tune_decoding.py runs/de_en_tied \
        [--last 1 3 5] [--beam-sizes 5 10] [--alphas 0.6 1.0 1.4] \
        [--split val] [--limit N] [--output results.json]

Two stages, both on `--split` (the validation split; the test split is never
read here, so nothing is tuned on it):

1. Which weights: the run's best model (`model/`, chosen by validation
   loss) and the mean of its `K` newest checkpoints for each `--last K`
   (`keras-rnn average`), each decoded with the config's beam size and
   length penalty.
2. How to decode them: the winner of stage 1 (highest lowercased BLEU, the
   number of issue 26's targets) under every `--beam-sizes` x `--alphas`
   setting (GNMT's length penalty, Wu et al. 2016:
   `lp(Y) = ((5 + |Y|) / 6) ** alpha`).

Prints one line per decode and writes all of them, with the choice, as JSON.
The averages are written to `<run>/averaged-<K>/` (model directories that
`keras-rnn evaluate` and `export` take).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parent.parent))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory")
    parser.add_argument("--last", type=int, nargs="*", default=[3, 5],
                        help="checkpoint counts to average (stage 1)")
    parser.add_argument("--beam-sizes", type=int, nargs="*", default=[5, 10])
    parser.add_argument("--alphas", type=float, nargs="*", default=[0.6, 1.0, 1.4])
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, help="only the first N sentences (a smoke test)")
    parser.add_argument("--output", help="JSON results (default <run>/tune_decoding.json)")
    args = parser.parse_args(argv)

    from keras_rnn.training.average import average
    from keras_rnn.training.evaluate import evaluate

    run = Path(args.run)
    rows = []

    def score(model_dir, weights, beam_size=None, alpha=None):
        start = time.perf_counter()
        result = evaluate(model_dir, split=args.split, beam_size=beam_size,
                          length_penalty_alpha=alpha, limit=args.limit)
        row = {"weights": weights, "model_dir": str(model_dir),
               "beam_size": result["beam_size"],
               "length_penalty_alpha": result["length_penalty_alpha"],
               "bleu": result["bleu"], "bleu_lowercased": result["bleu_lowercased"],
               "detail": result["detail"], "seconds": round(time.perf_counter() - start, 1)}
        rows.append(row)
        print(f"{weights:>12}  beam {row['beam_size']:>2}  alpha {row['length_penalty_alpha']:.1f}"
              f"  BLEU {row['bleu']:.2f} cased / {row['bleu_lowercased']:.2f} lowercased"
              f"  ({row['seconds']} s)", flush=True)
        return row

    stage1 = [score(run, "best model")]
    for k in args.last:
        output = run / f"averaged-{k}"
        record = average(run, last=k, output=output)
        stage1.append(score(output, f"last {k} avg"))
        stage1[-1]["steps"] = record["steps"]
    best = max(stage1, key=lambda r: r["bleu_lowercased"])
    stage2 = []
    for beam_size in args.beam_sizes:
        for alpha in args.alphas:
            if (beam_size, alpha) == (best["beam_size"], best["length_penalty_alpha"]):
                stage2.append(best)
                continue
            stage2.append(score(best["model_dir"], best["weights"], beam_size, alpha))
    chosen = max(stage2 + [best], key=lambda r: r["bleu_lowercased"])
    print(f"chosen on {args.split}: {chosen['weights']}, beam {chosen['beam_size']}, "
          f"alpha {chosen['length_penalty_alpha']}: {chosen['bleu']:.2f} / "
          f"{chosen['bleu_lowercased']:.2f}")
    output = Path(args.output or run / "tune_decoding.json")
    output.write_text(json.dumps({"run": str(run), "split": args.split, "rows": rows,
                                  "chosen": chosen}, indent=1) + "\n")
    print(f"results: {output}")


if __name__ == "__main__":
    main()
