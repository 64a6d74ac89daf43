"""The shipped Multi30k configs are the ones whose BLEU benchmarks/README.md reports.

A full-size run takes an hour on a CPU, too long for CI, so CI checks the
record instead: `benchmarks/record_quality.py` stores each measured run's
resolved config, its epochs, the validation-split choice of weights and
decoding, and its test scores in `benchmarks/results/multi30k_quality.json`.
A change to a shipped config's model, tokenizer, training or decoding
settings fails here until the run is measured again, and the README's
quality table must show the recorded numbers.
"""

import json

import pytest

from keras_rnn.training.config import Config, bucket_width_for
from tests.support import ROOT

RESULTS = ROOT / "benchmarks" / "results" / "multi30k_quality.json"
SHIPPED = ("multi30k_de_en", "multi30k_en_de")


def _comparable(values):
    values = json.loads(json.dumps(values))
    for key in ("name", "output_dir"):
        values.pop(key, None)
    values["data"].pop("dir", None)
    return values


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_config_is_the_measured_one(name):
    record = json.loads(RESULTS.read_text())[name]
    shipped = _comparable(Config.load(ROOT / "training" / "configs" / f"{name}.yaml").to_dict())
    # Through Config: a field added after the run was recorded (such as
    # model.decoder_type) takes its default, which is what the run did.
    measured = _comparable(Config.from_dict(record["config"]).to_dict())
    # auto resolves per device; the record holds what it resolved to where it ran.
    xla = record["test"]["backend"] == "jax"
    assert bucket_width_for(shipped["training"]["bucket_width"], xla=xla, recorded=None)[0] \
        == measured["training"]["bucket_width"]
    shipped["training"]["bucket_width"] = measured["training"]["bucket_width"]
    # Decoding is chosen on the validation split after training.
    chosen = record["chosen"]
    measured["evaluation"].update(beam_size=chosen["beam_size"],
                                  length_penalty_alpha=chosen["length_penalty_alpha"])
    for section in ("data", "tokenizer", "model", "training", "evaluation"):
        assert shipped[section] == measured[section], (
            f"{name}.yaml's {section} is not the one measured in {RESULTS.name}: measure it "
            "again (benchmarks/README.md, Quality) or restore it")


@pytest.mark.parametrize("name", SHIPPED)
def test_the_record_holds_real_numbers_and_the_readme_shows_them(name):
    record = json.loads(RESULTS.read_text())[name]
    epochs = record["epochs"]
    assert [r["epoch"] for r in epochs] == list(range(1, len(epochs) + 1))
    assert all(r["seconds"] > 0 for r in epochs)
    # Validation loss falls from the first epoch to the best.
    assert min(r["val_loss"] for r in epochs) < epochs[0]["val_loss"] - 1.0
    test = record["test"]
    assert test["split"] == "test_2016_flickr" and test["sentences"] == 1000
    assert test["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert test["signature_lowercased"].startswith("nrefs:1|case:lc|eff:no|tok:13a")
    assert 0 < test["bleu"] < 100 and 0 < test["bleu_lowercased"] < 100
    chosen = record["chosen"]
    # The choice is the best lowercased BLEU among the validation decodes.
    assert chosen["bleu_lowercased"] == max(r["bleu_lowercased"] for r in record["validation"])
    readme = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines()
               if line.startswith("| ") and f"`{name}.yaml`" in line)
    assert f"**{test['bleu']:.2f}**" in row and f"**{test['bleu_lowercased']:.2f}**" in row, row
