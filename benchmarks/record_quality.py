"""Records one Multi30k quality run in `benchmarks/results/multi30k_quality.json`.

    python benchmarks/record_quality.py runs/de_en_tied --key multi30k_de_en \
        --log runs/de_en_tied.log --command "keras-rnn train ..." --device "..."

Reads what the run left: its `config.yaml` (the resolved config it trained
with), `history.jsonl` (one record per epoch), the Keras progress lines of
its log (seconds per epoch), `tune_decoding.json` (`tune_decoding.py`'s
choice on the validation split) and the test-split scores of the chosen
model and decoding (`bleu.test_2016_flickr.json`, written by `keras-rnn
evaluate` in the chosen model directory; none with `--validation-only`,
for a lever run that lost on validation, whose test split is never read).
Stores them under `--key` (the shipped config's name, or a lever's):
`tests/training/test_shipped_quality.py` checks that the shipped configs are
still the ones recorded here, so a change to one fails CI until its run is
measured again.
"""

import argparse
import json
import re
from pathlib import Path

import yaml

RESULTS = Path(__file__).resolve().parent / "results" / "multi30k_quality.json"
# Run-specific entries: where it wrote and read, not how it trained.
UNRECORDED = {"name", "output_dir", ("data", "dir")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--key", required=True, help="the shipped config's name")
    parser.add_argument("--log", required=True, help="the train command's console log")
    parser.add_argument("--command", required=True, help="the train command, as run")
    parser.add_argument("--device", required=True, help="the machine, in words")
    parser.add_argument("--test-split", default="test_2016_flickr")
    parser.add_argument("--validation-only", action="store_true",
                        help="a run that lost on the validation split: its test split "
                             "is never decoded, and `test` is recorded as null")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)

    run = Path(args.run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    for entry in UNRECORDED:
        if isinstance(entry, tuple):
            config[entry[0]].pop(entry[1], None)
        else:
            config.pop(entry, None)
    epochs = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["kind"] == "epoch"]
    seconds = [int(s) for s in re.findall(r"^\d+/\d+ - (\d+)s - ", Path(args.log).read_text(),
                                           flags=re.M)]
    for record, s in zip(epochs, seconds):
        record["seconds"] = s
    tune = json.loads((run / "tune_decoding.json").read_text())
    chosen = tune["chosen"]
    test = None
    if not args.validation_only:
        test = json.loads((Path(chosen["model_dir"]) / f"bleu.{args.test_split}.json").read_text())
    if test and (test["beam_size"], test["length_penalty_alpha"]) != (
            chosen["beam_size"], chosen["length_penalty_alpha"]):
        raise SystemExit(f"{chosen['model_dir']}: the test scores were decoded with beam "
                         f"{test['beam_size']}, alpha {test['length_penalty_alpha']}, not the "
                         f"validation choice (beam {chosen['beam_size']}, alpha "
                         f"{chosen['length_penalty_alpha']})")
    output = Path(args.output)
    results = json.loads(output.read_text()) if output.exists() else {}
    results[args.key] = {
        "command": args.command, "device": args.device, "config": config,
        "epochs": epochs, "validation": tune["rows"], "chosen": chosen, "test": test,
    }
    output.write_text(json.dumps(results, indent=1) + "\n")
    scores = f"{test['bleu']} / {test['bleu_lowercased']}" if test else "not decoded"
    print(f"{args.key}: {len(epochs)} epochs, chosen {chosen['weights']} beam "
          f"{chosen['beam_size']} alpha {chosen['length_penalty_alpha']}; val "
          f"{chosen['bleu']} / {chosen['bleu_lowercased']}; test {scores} -> {output}")


if __name__ == "__main__":
    main()
