"""keras_rnn.layers: the sequence layers' explicit signatures and configs."""

import inspect

import pytest

import keras_rnn

# Each layer's own options, beyond keras.layers.RNN's.
OPTIONS = {
    keras_rnn.SimpleRNN: ["units", "activation", "dropout",
                          "recurrent_dropout", "seed", "zoneout", "layer_norm",
                          "norm_epsilon", "norm_gamma_initializer",
                          "norm_beta_initializer", "use_cudnn"],
    keras_rnn.LSTM: ["units", "activation", "recurrent_activation",
                     "unit_forget_bias", "dropout", "recurrent_dropout",
                     "seed", "zoneout", "zoneout_cell", "layer_norm",
                     "norm_epsilon", "norm_gamma_initializer",
                     "norm_beta_initializer", "peephole",
                     "peephole_initializer", "use_cudnn"],
    keras_rnn.GRU: ["units", "activation", "recurrent_activation",
                    "reset_after", "dropout", "recurrent_dropout", "seed",
                    "zoneout", "layer_norm", "norm_epsilon",
                    "norm_gamma_initializer", "norm_beta_initializer",
                    "use_cudnn"],
}
RNN_ARGS = ["return_sequences", "return_state", "go_backwards", "stateful",
            "unroll"]
SETTINGS = {
    keras_rnn.SimpleRNN: dict(zoneout=0.1, layer_norm=True, dropout=0.2),
    keras_rnn.LSTM: dict(zoneout=0.1, zoneout_cell=0.2, layer_norm=True,
                         peephole=True, recurrent_dropout=0.3),
    keras_rnn.GRU: dict(zoneout=0.1, layer_norm=True, reset_after=False),
}


@pytest.mark.parametrize("layer", list(OPTIONS), ids=lambda c: c.__name__)
def test_signature_and_help_show_the_cell_options(layer):
    parameters = inspect.signature(layer).parameters
    for name in OPTIONS[layer] + RNN_ARGS:
        assert name in parameters, name
        assert name in layer.__doc__, name  # documented under Args:
    # The defaults in the signature are the cell's.
    cell_parameters = inspect.signature(layer.cell_class).parameters
    for name in OPTIONS[layer]:
        if name in cell_parameters:
            assert parameters[name].default == cell_parameters[name].default, name


@pytest.mark.parametrize("layer", list(OPTIONS), ids=lambda c: c.__name__)
def test_get_config_round_trips(layer):
    original = layer(7, return_sequences=True, name="rnn", **SETTINGS[layer])
    config = original.get_config()
    clone = layer.from_config(config)
    assert clone.get_config() == config
    for name, value in SETTINGS[layer].items():
        assert getattr(clone, name) == value
        assert config[name] == value
    assert clone.return_sequences and clone.units == 7


@pytest.mark.parametrize("layer", list(OPTIONS), ids=lambda c: c.__name__)
def test_get_config_covers_every_argument(layer):
    config = layer(7).get_config()
    for name, parameter in inspect.signature(layer).parameters.items():
        if parameter.kind is parameter.VAR_KEYWORD:
            continue
        if name == "peephole" and layer is not keras_rnn.LSTM:
            continue  # only False: a GRU or Elman RNN has no cell state
        assert name in config, name
