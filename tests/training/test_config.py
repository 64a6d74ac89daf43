"""`keras_rnn.training.config`: which config file `keras-rnn train` reads and
where its corpus is (shipped configs by name, `--data-dir`,
`$KERAS_RNN_DATA_DIR`), from any working directory."""

from pathlib import Path

import pytest

from keras_rnn.cli import main
from keras_rnn.training.config import SHIPPED_CONFIGS, Config, resolve_config
from tests.support import ROOT


def test_shipped_configs_are_found_by_name_and_read_their_data_from_the_working_directory(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KERAS_RNN_DATA_DIR", raising=False)
    for name in ("quick", "multi30k_de_en", "multi30k_en_de"):
        path, overrides = resolve_config(name)
        assert path == SHIPPED_CONFIGS / f"{name}.yaml"
        config = Config.load(path, overrides=overrides)
        assert config.data.dir == str(tmp_path / "data" / "multi30k"), name
        assert SHIPPED_CONFIGS not in Path(config.data.dir).parents
    assert SHIPPED_CONFIGS == ROOT / "training" / "configs"


def test_the_data_dir_flag_then_the_environment_then_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    file = ROOT / "training" / "configs" / "quick.yaml"
    monkeypatch.delenv("KERAS_RNN_DATA_DIR", raising=False)
    assert resolve_config(str(file)) == (file, [])  # the file's own data.dir
    monkeypatch.setenv("KERAS_RNN_DATA_DIR", "from-env")
    assert resolve_config(str(file))[1] == [f"data.dir={tmp_path / 'from-env'}"]
    assert resolve_config("quick")[1] == [f"data.dir={tmp_path / 'from-env'}"]
    assert resolve_config("quick", data_dir="flag")[1] == [f"data.dir={tmp_path / 'flag'}"]


def test_an_unknown_config_names_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="shipped: multi30k_de_en, multi30k_en_de, quick"):
        resolve_config("quik")


def test_train_by_name_without_a_corpus_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KERAS_RNN_DATA_DIR", raising=False)
    assert main(["train", "quick"]) == 2
    err = capsys.readouterr().err
    assert err == (f"keras-rnn train: error: {tmp_path / 'data' / 'multi30k'}: no such corpus "
                   "directory; give --data-dir DIR or set KERAS_RNN_DATA_DIR, or fetch "
                   "Multi30k with `keras-rnn download data/multi30k`.\n"), err
    assert not (tmp_path / "runs").exists()
