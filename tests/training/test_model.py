"""`keras_rnn.training.model`: the config's `model` section is `Seq2Seq`'s
arguments, passed on as one dict."""

import dataclasses
import inspect

import keras_rnn
from keras_rnn.training.config import Config, ModelConfig
from keras_rnn.training.model import build_model

# What `build_model` adds itself, from the tokenizers and the other sections.
DERIVED = {"source_vocab_size", "target_vocab_size", "seed", "decoding"}


def test_every_model_config_field_is_a_seq2seq_argument():
    arguments = set(inspect.signature(keras_rnn.Seq2Seq.__init__).parameters)
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    assert fields <= arguments, f"not Seq2Seq arguments: {sorted(fields - arguments)}"
    assert DERIVED <= arguments
    assert not fields & DERIVED


def test_build_model_passes_every_model_field_on():
    # A value other than the default for every field, so none can be dropped.
    model = {
        "embedding_dim": 8, "units": 16, "encoder_units": 12, "encoder_layers": 2,
        "decoder_layers": 2, "bidirectional": False, "cell": "lstm",
        "cell_options": {"layer_norm": True}, "attention": "luong",
        "attention_options": {"scale": True}, "attention_layer_size": 10,
        "tie_embeddings": True, "embedding_dropout": 0.1, "output_dropout": 0.2,
        "bridge": "zeros", "decoder_type": "conditional",
    }
    defaults = dataclasses.asdict(ModelConfig())
    assert set(model) == set(defaults)
    assert all(model[name] != defaults[name] for name in model)
    config = Config.from_dict({"model": model, "training": {"seed": 7, "jit_compile": False}})
    built = build_model(config, 40, 50).get_config()
    assert {name: built[name] for name in model} == model
    assert (built["source_vocab_size"], built["target_vocab_size"], built["seed"]) == (40, 50, 7)
    assert built["decoding"]["beam_size"] == config.evaluation.beam_size
