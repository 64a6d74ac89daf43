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
A setting already in that JSON (an earlier run of this script on the same
run, split and weights) is not decoded again, so a grid widened afterwards (an alpha
past the edge that won) costs only its new settings; the choice is the best
of all the rows.
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

    from keras_rnn.training.average import average, checkpoints_to_average
    from keras_rnn.training.config import Config
    from keras_rnn.training.evaluate import evaluate, model_directory

    run = Path(args.run)
    output = Path(args.output or run / "tune_decoding.json")

    def identity(model_dir):
        """What the weights are: the averaged checkpoints, or the best model's step."""
        directory = model_directory(model_dir)
        for name in ("averaged.json", "best.json"):
            if (directory / name).exists():
                return json.loads((directory / name).read_text())
        return None

    rows = []
    if output.exists():
        previous = json.loads(output.read_text())
        if previous["split"] == args.split and previous.get("limit") == args.limit:
            # Only rows of the weights still there (a run trained on, or a
            # new average, makes earlier rows stale).
            rows = [row for row in previous["rows"]
                    if row.get("identity") == identity(row["model_dir"])]

    def score(model_dir, weights, beam_size=None, alpha=None):
        key = (str(model_dir), identity(model_dir), beam_size, alpha)
        for row in rows:
            if (row["model_dir"], row.get("identity"), row["beam_size"],
                    row["length_penalty_alpha"]) == key:
                print(f"{weights:>12}  beam {beam_size:>2}  alpha {alpha:.1f}  (scored before: "
                      f"{row['bleu_lowercased']:.2f} lowercased)", flush=True)
                return row
        start = time.perf_counter()
        result = evaluate(model_dir, split=args.split, beam_size=beam_size,
                          length_penalty_alpha=alpha, limit=args.limit)
        row = {"weights": weights, "model_dir": key[0], "identity": key[1],
               "beam_size": result["beam_size"],
               "length_penalty_alpha": result["length_penalty_alpha"],
               "bleu": result["bleu"], "bleu_lowercased": result["bleu_lowercased"],
               "detail": result["detail"], "seconds": round(time.perf_counter() - start, 1)}
        rows.append(row)
        print(f"{weights:>12}  beam {row['beam_size']:>2}  alpha {row['length_penalty_alpha']:.1f}"
              f"  BLEU {row['bleu']:.2f} cased / {row['bleu_lowercased']:.2f} lowercased"
              f"  ({row['seconds']} s)", flush=True)
        return row

    # Stage 1 decodes with the config's own settings.
    settings = Config.load(model_directory(run) / "config.yaml").evaluation
    default = (settings.beam_size, settings.length_penalty_alpha)
    stage1 = [score(run, "best model", *default)]
    for k in args.last:
        model_dir = run / f"averaged-{k}"
        wanted = [p.name for p in checkpoints_to_average(run, k)]
        if (identity(model_dir) or {}).get("checkpoints") != wanted:
            average(run, last=k, output=model_dir)
        stage1.append(score(model_dir, f"last {k} avg", *default))
        stage1[-1]["steps"] = stage1[-1]["identity"]["steps"]
    best = max(stage1, key=lambda r: r["bleu_lowercased"])
    for beam_size in args.beam_sizes:  # stage 2: the stage-1 winner's decoding
        for alpha in args.alphas:
            score(best["model_dir"], best["weights"], beam_size, alpha)
    chosen = max(rows, key=lambda r: r["bleu_lowercased"])
    print(f"chosen on {args.split}: {chosen['weights']}, beam {chosen['beam_size']}, "
          f"alpha {chosen['length_penalty_alpha']}: {chosen['bleu']:.2f} / "
          f"{chosen['bleu_lowercased']:.2f}")
    output.write_text(json.dumps({"run": str(run), "split": args.split, "limit": args.limit,
                                  "rows": rows,
                                  "chosen": chosen}, indent=1) + "\n")
    print(f"results: {output}")


if __name__ == "__main__":
    main()
