"""Training configuration: dataclasses, read from and written to YAML.

A config has five sections (`data`, `tokenizer`, `model`, `training`,
`evaluation`); every field has a default, so a YAML file names only what it
changes. Unknown keys are errors that name the section and the key.
`Config.save` writes the complete config (defaults filled in) beside every
checkpoint, so a run can always be reproduced from its own directory.
"""

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class DataConfig:
    """Where the parallel text is: `<dir>/<split>.<lang>`, one sentence a line.

    `train_split` and `valid_split` may also be lists of names, read one
    after another as one corpus, and a file may be gzip (`<split>.<lang>.gz`).
    The tokenized splits are cached in `cache_dir` (None:
    `$KERAS_RNN_CACHE_DIR`, else `~/.cache/keras-rnn/tokens`; see
    `training.token_cache`).
    """

    dir: str = "../shared/data/multi30k"
    source_lang: str = "de"
    target_lang: str = "en"
    train_split: object = "train"  # a name or a list of names
    valid_split: object = "val"  # a name or a list of names
    test_split: str = "test_2016_flickr"
    max_length: int = 80  # training pairs with more subword tokens are skipped
    cache_dir: str = None  # the token cache (None: $KERAS_RNN_CACHE_DIR or ~/.cache)


@dataclass
class TokenizerConfig:
    """SentencePiece models, one per language, trained on the training split."""

    source_vocab_size: int = 8000
    target_vocab_size: int = 8000
    model_type: str = "unigram"
    # SentencePiece trains on a seeded sample of this many sentences of a
    # larger training split (0 = all): 1M sentences give the piece
    # statistics of an 8k-32k vocabulary, and keep the trainer's memory
    # (it holds every sentence) to a few GB.
    max_sentences: int = 1_000_000


@dataclass
class ModelConfig:
    """Arguments of `keras_rnn.Seq2Seq` (the vocabularies come from the tokenizers)."""

    embedding_dim: int = 256
    units: int = 512
    encoder_units: int = 256
    encoder_layers: int = 1
    decoder_layers: int = 1
    bidirectional: bool = True
    cell: str = "gru"
    cell_options: dict = field(default_factory=dict)
    attention: str = "bahdanau"
    attention_options: dict = field(default_factory=dict)
    attention_layer_size: int = None
    tie_embeddings: bool = False
    embedding_dropout: float = 0.0
    output_dropout: float = 0.0
    bridge: str = "dense"
    decoder_type: str = "input_feeding"  # or "conditional" (Nematus' cGRU)


@dataclass
class TrainingConfig:
    """The optimisation, the batches, the checkpoints and the devices."""

    epochs: int = 20
    steps_per_epoch: int = None  # None: the batches of one full pass
    max_tokens: int = 2048  # padded tokens of the longer side per batch
    # Sentences are padded to a multiple of this; auto: `bucket_width_for`.
    bucket_width: object = 4
    curriculum_passes: int = 0  # passes over a growing easy subset (0 = off)
    curriculum_start: float = 0.2  # competence (fraction of the data) at pass 0
    learning_rate: float = 1e-3
    warmup_steps: int = 500
    plateau_factor: float = 0.5
    plateau_patience: int = 1
    min_learning_rate: float = 1e-5
    early_stopping_patience: int = 4
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    checkpoint_every: int = 500  # steps; checkpoints are also written at epoch ends
    keep_checkpoints: int = 2
    log_every: int = 50  # steps between history records
    validation_bleu: bool = True  # greedy BLEU on the validation split each epoch
    seed: int = 1
    precision: str = "float32"  # float32 | mixed_float16 | mixed_bfloat16
    # XLA: true | false | auto (JAX: always; TensorFlow: on a GPU only; why:
    # `training.model.jit_compile_for`).
    jit_compile: object = "auto"
    distribution: str = "none"  # none | mirrored (TensorFlow) | data_parallel (JAX)
    data_pipeline: str = "auto"  # auto | tf (tf.data) | python (no TensorFlow)
    batch_multiple: int = 1  # batch sizes are multiples of this and of the replicas
    logical_cpus: int = 0  # split the CPU into this many TensorFlow devices (tests)


@dataclass
class EvaluationConfig:
    """Beam search settings of `keras-rnn evaluate` (and saved with the model)."""

    beam_size: int = 5
    length_penalty_alpha: float = 0.6
    max_length_ratio: float = 2.0
    max_length_offset: int = 10
    batch_size: int = 64


SECTIONS = {
    "data": DataConfig,
    "tokenizer": TokenizerConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "evaluation": EvaluationConfig,
}
CHOICES = {
    ("training", "precision"): ("float32", "mixed_float16", "mixed_bfloat16"),
    ("training", "distribution"): ("none", "mirrored", "data_parallel"),
    ("training", "data_pipeline"): ("auto", "tf", "python"),
    ("tokenizer", "model_type"): ("unigram", "bpe"),
}


@dataclass
class Config:
    """A whole training run. `output_dir` holds tokenizers, checkpoints, logs."""

    name: str = "run"
    output_dir: str = "runs/run"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    @classmethod
    def from_dict(cls, values, source="config"):
        """Builds a Config; unknown sections or keys raise ValueError."""
        values = dict(values or {})
        top = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - top
        if unknown:
            raise ValueError(f"{source}: unknown keys {sorted(unknown)}; known: {sorted(top)}.")
        kwargs = {}
        for name, value in values.items():
            if name not in SECTIONS:
                kwargs[name] = value
                continue
            section = SECTIONS[name]
            known = {f.name for f in dataclasses.fields(section)}
            if not isinstance(value, dict):
                raise ValueError(f"{source}: section {name!r} must be a mapping; got {value!r}.")
            bad = set(value) - known
            if bad:
                raise ValueError(
                    f"{source}: unknown keys {sorted(bad)} in section {name!r}; "
                    f"known: {sorted(known)}."
                )
            kwargs[name] = section(**value)
        config = cls(**kwargs)
        config.validate(source)
        return config

    def validate(self, source="config"):
        for (section, key), choices in CHOICES.items():
            value = getattr(getattr(self, section), key)
            if value not in choices:
                raise ValueError(f"{source}: {section}.{key} must be one of {choices}; got {value!r}.")
        d = self.data
        for key in ("train_split", "valid_split"):
            value = getattr(d, key)
            names = [value] if isinstance(value, str) else value
            if not (isinstance(names, list) and names
                    and all(isinstance(n, str) and n for n in names)):
                raise ValueError(f"{source}: data.{key} must be a split name or a non-empty "
                                 f"list of names; got {value!r}.")
        m = self.tokenizer.max_sentences
        if not isinstance(m, int) or isinstance(m, bool) or m < 0:
            raise ValueError(f"{source}: tokenizer.max_sentences must be an integer >= 0; "
                             f"got {m!r}.")
        t = self.training
        if t.jit_compile not in (True, False, "auto"):
            raise ValueError(f"{source}: training.jit_compile must be true, false or auto; "
                             f"got {t.jit_compile!r}.")
        for key in ("epochs", "max_tokens", "bucket_width", "checkpoint_every",
                    "keep_checkpoints", "log_every", "batch_multiple"):
            if key == "bucket_width" and t.bucket_width == "auto":
                continue
            value = getattr(t, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{source}: training.{key} must be a positive integer"
                                 + (" or auto" if key == "bucket_width" else "")
                                 + f"; got {getattr(t, key)!r}.")
        if t.bucket_width != "auto" and t.max_tokens < t.bucket_width:
            raise ValueError(f"{source}: training.max_tokens ({t.max_tokens}) < bucket_width ({t.bucket_width}).")
        if not 0 < t.curriculum_start <= 1:
            raise ValueError(f"{source}: training.curriculum_start must be in (0, 1]; got {t.curriculum_start!r}.")
        if t.learning_rate <= 0:
            raise ValueError(f"{source}: training.learning_rate must be > 0; got {t.learning_rate!r}.")

    @classmethod
    def load(cls, path, overrides=()):
        """Reads a YAML file; `overrides` are "section.key=value" strings.

        A relative `data.dir` in the file is relative to the file's own
        directory (so a config finds its data from any working directory);
        one given by an override, or the default, to the working directory.
        Either way the loaded config holds an absolute path, and so does the
        `config.yaml` a run saves.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such config file.")
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        data = values.get("data") if isinstance(values, dict) else None
        if isinstance(data, dict) and isinstance(data.get("dir"), str):
            data["dir"] = str((path.resolve().parent / data["dir"]).resolve())
        for item in overrides:
            apply_override(values, item)
        config = cls.from_dict(values, source=str(path))
        config.data.dir = str(Path(config.data.dir).resolve())
        return config

    def to_dict(self):
        return dataclasses.asdict(self)

    def save(self, path):
        """Writes the full config as YAML, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")
        os.replace(temporary, path)


def bucket_width_for(setting, xla, recorded=None):
    """`(width, reason)`: the `training.bucket_width` a run uses.

    auto: 8 where the training step is compiled by XLA (JAX; TensorFlow on
    a GPU), which compiles it once per bucket shape, so fewer shapes (7
    instead of 13 on Multi30k) save compile time (78 s instead of 137 s on
    an H100); 4 without XLA (TensorFlow on a CPU, PyTorch), where one
    traced step serves every shape and a wider bucket only adds padding
    (24% of target positions instead of 16% on Multi30k: 11% fewer real
    tokens a second on the 2-core CPU, benchmarks/README.md, issue 25).

    Args:
        setting: the config's value, an integer or "auto".
        xla: whether the training step is XLA-compiled.
        recorded: the integer a resumed run chose when it started (its
            `config.yaml`), kept so that the batch stream, a function of
            the width, stays the one the checkpoints were trained on.
    """
    if setting != "auto":
        return int(setting), "training.bucket_width"
    if isinstance(recorded, int) and not isinstance(recorded, bool):
        return recorded, "auto: as this run started"
    if xla:
        return 8, "auto: XLA compiles each bucket shape"
    return 4, "auto: no XLA, one traced step for every shape"


def apply_override(values, item):
    """Applies one "section.key=value" (value parsed as YAML) to a dict."""
    if "=" not in item:
        raise ValueError(f"Override {item!r} must look like section.key=value.")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    target = values
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = yaml.safe_load(raw)


# The configs shipped in the package (`keras-rnn train quick`).
SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"
# The corpus directory of a shipped config taken by name, under the working
# directory (where `keras-rnn download data/multi30k` puts Multi30k).
DEFAULT_DATA_DIR = "data/multi30k"


def resolve_config(config, data_dir=None):
    """The config file `keras-rnn train CONFIG` reads, and its overrides.

    `config` is a YAML file, or the name of a shipped config (`quick`,
    `multi30k_de_en`, `multi30k_en_de`). The corpus directory is `data_dir`
    (`--data-dir`), else `$KERAS_RNN_DATA_DIR`, else for a config file its
    own `data.dir` (relative to the file) and for a shipped config taken by
    name `data/multi30k` under the working directory: never a path inside
    the installed package.

    Args:
        config: a path or a shipped config's name.
        data_dir: the corpus directory, or None.

    Returns:
        `(path, overrides)`: the YAML file and the `section.key=value`
        overrides to load it with (relative paths resolved against the
        working directory).

    Raises:
        FileNotFoundError: neither a file nor a shipped config's name.
    """
    path = Path(config)
    shipped = SHIPPED_CONFIGS / f"{config}.yaml"
    by_name = not path.exists() and path.name == str(config) and shipped.exists()
    if by_name:
        path = shipped
    elif not path.exists():
        names = ", ".join(sorted(p.stem for p in SHIPPED_CONFIGS.glob("*.yaml")))
        raise FileNotFoundError(f"{config}: no such config file, and no shipped config of "
                                f"that name (shipped: {names}).")
    data_dir = data_dir or os.environ.get("KERAS_RNN_DATA_DIR") or (
        DEFAULT_DATA_DIR if by_name else None)
    overrides = [] if data_dir is None else [f"data.dir={Path(data_dir).resolve()}"]
    return path, overrides
