"""`keras-rnn train CONFIG`: tokenizers, model, Keras `fit`, resumable.

A run lives in `config.output_dir`:

    config.yaml                  the full config of the run
    tokenizer.<lang>.model       SentencePiece models (trained on first use)
    checkpoints/step-XXXXXXXX/   weights + optimizer, state.json, config.yaml
    checkpoints/latest           name of the newest complete checkpoint
    history.jsonl                loss, tokens/s, learning rate, val loss/BLEU
    logs/                        TensorBoard
    model/                       the best model: model.keras + tokenizers

Checkpoints are written every `checkpoint_every` steps and at epoch ends,
each to a temporary directory renamed into place, then `latest` is
replaced: a run killed at any moment (even `kill -9` during a save) keeps
its last complete checkpoint (`training.checkpoints`). Running the same
command again resumes from it: the weights, the optimizer, the
learning-rate schedule, early stopping, the dropout seeds, the running epoch
loss and the position in the batch stream (a pure function of the seed and
the step, `training.pipeline`), so the resumed run ends with the same weights
and logs the same losses as an uninterrupted one. A checkpoint written at an
epoch's last step, before its validation, says so (`phase`): a run killed
during that validation resumes into it. A full disk stops the run with one
line, its last complete checkpoint intact. Nothing is written into the run
directory before the config and the data have passed their checks.

The pieces, each in its own module: the model, its optimizer and XLA in
`training.model`, the learning rate (warm-up, plateau cuts) in
`training.schedule`, when a run ends (epoch budget, early stopping)
in `training.stopping`, checkpoints in `training.checkpoints`, history and
console lines in `training.history`, and the Keras callback that calls them
at each step and epoch end in `training.controller`. Gradients are clipped
to a global norm of `clip_norm` (Pascanu et al. 2013).

Several processes (JAX, Keras's `KERAS_DISTRIBUTION_*` variables) train one
data-parallel model, each fed its slice of every global batch; process 0
writes the run directory (`training.multiprocess`).
"""

import contextlib
import errno
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from keras_rnn.training import data as data_lib
from keras_rnn.training import multiprocess
from keras_rnn.training import token_cache
from keras_rnn.training.checkpoints import Checkpoints, seed_states
from keras_rnn.training.config import bucket_width_for
from keras_rnn.training.controller import Controller, CtrlC, PartialEpoch
from keras_rnn.training.evaluate import translate_ids
from keras_rnn.training.history import History, log
from keras_rnn.training.model import build_model, jit_compile_for
from keras_rnn.training.pipeline import BatchPlan, ParallelData, numpy_batches, tf_dataset
from keras_rnn.training.stopping import fresh_state
from keras_rnn.training.tokenizer import Tokenizer, train_tokenizer


@dataclass
class Corpus:
    """Tokenizers and tokenized splits of a run."""

    source_tokenizer: Tokenizer
    target_tokenizer: Tokenizer
    train: ParallelData
    valid: ParallelData
    valid_references: list
    skipped: int


def tokenizer_path(config, lang):
    return Path(config.output_dir) / f"tokenizer.{lang}.model"


def load_tokenizers(config, train_if_missing=True, staging=None):
    """The run's two tokenizers, trained on the training split when missing.

    Args:
        config: the run's `Config`.
        train_if_missing: train a missing tokenizer (else FileNotFoundError).
        staging: a directory to train missing tokenizers into (default: the
            run directory); `TrainingRun.setup` moves them into the run only
            once the data has passed every check.
    """
    d = config.data
    tokenizers = []
    for lang, size in ((d.source_lang, config.tokenizer.source_vocab_size),
                       (d.target_lang, config.tokenizer.target_vocab_size)):
        path = tokenizer_path(config, lang)
        if path.exists():
            tokenizers.append(Tokenizer(path))
            continue
        if not train_if_missing:
            raise FileNotFoundError(f"{path}: no tokenizer (train the run first).")
        if staging is not None:
            path = Path(staging) / path.name
        texts = data_lib.split_files(d.dir, d.train_split, lang)
        for text in texts:  # clear errors before SentencePiece sees the files
            for _ in data_lib.iter_lines(text):
                pass
        log(f"Training the {lang} SentencePiece model ({size} pieces) on "
            + ", ".join(map(str, texts)))
        tokenizers.append(train_tokenizer(
            texts, path, vocab_size=size, model_type=config.tokenizer.model_type,
            max_sentences=config.tokenizer.max_sentences, seed=config.training.seed,
        ))
    return tokenizers


def load_corpus(config, staging=None, replicas=1):
    """The tokenized training and validation splits, from the token cache.

    Each split is tokenized once into the token cache (`training.token_cache`)
    and memory-mapped: a resumed run (or another run with the same data and
    tokenizers) neither re-reads the text nor calls the tokenizer, except
    for the validation references (the validation split's target text).
    Every data problem raises `DataError` naming the file and line, also a
    pair too long for `training.max_tokens` (`check_lengths`).

    Args:
        config: the run's `Config`.
        staging: where missing tokenizers are trained (`load_tokenizers`).
        replicas: the data-parallel replicas (batch sizes are multiples).

    Returns:
        A `Corpus`.
    """
    d, t = config.data, config.training
    splits = {}
    for name, split in (("train", d.train_split), ("valid", d.valid_split)):
        splits[name] = (data_lib.split_files(d.dir, split, d.source_lang),
                        data_lib.split_files(d.dir, split, d.target_lang))
    source_tokenizer, target_tokenizer = load_tokenizers(config, staging=staging)
    root = token_cache.cache_root(d.cache_dir)
    loaded = {name: token_cache.tokenized_split(root, *files, source_tokenizer,
                                                target_tokenizer, name=name)
              for name, files in splits.items()}
    (train, train_meta), (valid, valid_meta) = loaded["train"], loaded["valid"]
    keep = np.flatnonzero(train.lengths() <= d.max_length)
    skipped = len(train) - len(keep)
    if skipped:
        train = train.subset(keep)
    check_lengths(train, lambda i: token_cache.locate_line(*splits["train"], train_meta,
                                                           int(keep[i])),
                  t, replicas=replicas)
    check_lengths(valid, lambda i: token_cache.locate_line(*splits["valid"], valid_meta, i),
                  t, replicas=replicas)
    references = [line for path in splits["valid"][1] for line in data_lib.iter_lines(path)]
    return Corpus(source_tokenizer, target_tokenizer, train, valid, references, skipped)


def check_lengths(data, locate, training, replicas=1):
    """Raises `DataError` (file, line) for the first pair no batch can hold.

    A batch holds `max_tokens` padded tokens on each side, in rows of a
    multiple of the replicas: a pair longer than `max_tokens // multiple`
    (after rounding up to `bucket_width`) fits no batch.

    Args:
        data: the `ParallelData`.
        locate: pair index -> `(source_path, target_path, line)`.
        training: the `TrainingConfig`.
        replicas: the data-parallel replicas.
    """
    multiple = math.lcm(replicas, training.batch_multiple)
    limit = training.max_tokens // multiple
    width = training.bucket_width
    padded = -(-data.lengths() // width) * width
    (bad,) = np.nonzero(padded > limit)
    if not len(bad):
        return
    i = int(bad[0])
    source_longer = data.source_lengths[i] >= data.target_lengths[i]
    source_path, target_path, line = locate(i)
    path = source_path if source_longer else target_path
    tokens = int(data.lengths()[i])
    raise data_lib.DataError(
        f"{path}: line {line} is {tokens} subword tokens long ({int(padded[i])} rounded up to "
        f"training.bucket_width={width}), more than a batch of training.max_tokens="
        f"{training.max_tokens} holds ({limit} per row"
        + (f" with batches of a multiple of {multiple} rows" if multiple > 1 else "")
        + "); shorten or remove the line, or raise training.max_tokens.", path, line)


# ------------------------------------------------------------------- run


class TrainingRun:
    """One training run: everything `keras-rnn train` does.

    Args:
        config: a `Config`.
        devices: logical devices for the distribution (default: all).
    """

    def __init__(self, config, devices=None):
        self.config = config
        self.devices = devices
        self.directory = Path(config.output_dir)
        self.checkpoints = Checkpoints(self.directory / "checkpoints",
                                       config.training.keep_checkpoints, log=log)
        self.verbose = 1 if sys.stdout.isatty() else 2  # progress bar, or a line per epoch
        self.history = History(self.directory)
        self.ctrl_c = CtrlC()
        self.state = None
        self.strategy = None
        # Several processes (`training.multiprocess`): process 0 writes the run.
        self.processes = multiprocess.process_count()
        self.chief = multiprocess.process_index() == 0
        self.shard = ((multiprocess.process_index(), self.processes)
                      if self.processes > 1 else None)

    # ---- setup

    def _distribution(self):
        t = self.config.training
        if t.logical_cpus:
            import tensorflow as tf

            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * t.logical_cpus)
        if self.processes > 1:
            if t.distribution == "mirrored":
                raise ValueError("multi-process training runs on JAX with "
                                 "training.distribution=data_parallel (or none), not mirrored.")
            # Every process's devices; each process feeds its own slice.
            devices = self.devices or keras.distribution.list_devices()
            keras.distribution.set_distribution(keras.distribution.DataParallel(
                devices=devices, auto_shard_dataset=False))
            return len(devices)
        if t.distribution == "mirrored":
            if keras.backend.backend() != "tensorflow":
                raise ValueError("training.distribution=mirrored needs KERAS_BACKEND=tensorflow "
                                 "(use data_parallel on JAX).")
            import tensorflow as tf

            self.strategy = tf.distribute.MirroredStrategy(self.devices)
            return self.strategy.num_replicas_in_sync
        if t.distribution == "data_parallel":
            if keras.backend.backend() != "jax":
                raise ValueError("training.distribution=data_parallel needs KERAS_BACKEND=jax "
                                 "(use mirrored on TensorFlow).")
            devices = self.devices or keras.distribution.list_devices()
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
            return len(devices)
        return 1

    def setup(self):
        """Checks the config and the data, then prepares the run directory.

        Nothing is written into the run directory before the pipeline, the
        data files and the pair lengths have passed their checks: missing
        tokenizers are trained into a temporary directory and moved in after.
        """
        config, t = self.config, self.config.training
        pipeline = self._pipeline_kind()  # an impossible pipeline fails before anything is written
        replicas = self._distribution()  # first: logical devices precede any op
        keras.config.set_dtype_policy(t.precision)
        keras.utils.set_random_seed(t.seed)
        # Before the corpus: `check_lengths` and the batch plans use the width.
        t.bucket_width, width_reason = bucket_width_for(
            t.bucket_width, jit_compile_for(t.jit_compile)[0], self._recorded("bucket_width"))
        if self.chief:  # the other processes read its tokenizers and token cache
            with tempfile.TemporaryDirectory(prefix="keras-rnn-tokenizers-") as staging:
                self.corpus = c = load_corpus(config, staging=staging, replicas=replicas)
                self.directory.mkdir(parents=True, exist_ok=True)
                for trained in Path(staging).iterdir():
                    shutil.move(str(trained), str(self.directory / trained.name))
            config.save(self.directory / "config.yaml")
        multiprocess.barrier("keras-rnn-setup")
        if not self.chief:
            self.corpus = c = load_corpus(config, replicas=replicas)
        if c.skipped:
            log(f"Skipped {c.skipped} training pairs longer than {config.data.max_length} tokens.")
        self.plan = BatchPlan(
            c.train.lengths(), t.max_tokens, t.bucket_width, seed=t.seed,
            curriculum_passes=t.curriculum_passes, curriculum_start=t.curriculum_start,
            batch_multiple=math.lcm(replicas, t.batch_multiple),
        )
        self.valid_plan = BatchPlan(c.valid.lengths(), t.max_tokens, t.bucket_width,
                                    seed=None, batch_multiple=math.lcm(replicas, t.batch_multiple))
        self.steps_per_epoch = t.steps_per_epoch or self.plan.steps_per_pass()
        scope = self.strategy.scope() if self.strategy else contextlib.nullcontext()
        with scope:
            self.model = build_model(config, c.source_tokenizer.vocab_size,
                                     c.target_tokenizer.vocab_size)
        log(f"{len(c.train)} training pairs, {len(c.valid)} validation pairs; "
            f"model {self.model.count_params():,} parameters; "
            f"{self.steps_per_epoch} steps per epoch of <= {t.max_tokens} tokens; "
            f"backend {keras.backend.backend()}, {replicas} replica(s)"
            + (f" in {self.processes} processes (this is process {self.shard[0]})"
               if self.shard else ""))
        xla, reason = jit_compile_for(t.jit_compile)
        log(f"XLA {'on' if xla else 'off'} ({reason}); bucket_width {t.bucket_width} "
            f"({width_reason}); data pipeline {pipeline}"
            + (" (auto: TensorFlow is not installed, so the Python pipeline instead of tf.data)"
               if t.data_pipeline == "auto" and pipeline == "python" else ""))
        if not self.history.tensorboard_available():
            log("TensorBoard logging skipped: it needs TensorFlow and TensorBoard "
                "(pip install 'keras-rnn[tensorboard]'); every record is in history.jsonl.")
        if keras.backend.backend() == "jax" and not xla:
            # Eager JAX traces and compiles every `lax.scan` anew at every
            # step, so every step pays a compilation.
            log("Warning: training.jit_compile=false on JAX re-compiles the recurrent "
                "loops at every step; set it to true unless you are debugging.")

    # ---- state

    def fresh_state(self):
        return fresh_state()

    def save_checkpoint(self):
        if self.chief:
            self.checkpoints.save(self.model, self.state, self.config)
        else:
            self._follow_save(lambda scratch: (self.model.save_weights(
                scratch / "model.weights.h5"), seed_states(self.model)))
        self._saved_state = dict(self.state)

    def _follow_save(self, save):
        """A non-chief process's part in process 0's save, into a scratch directory.

        Saving a distributed model takes every process (Keras re-places
        values across the processes), so the other processes save the same
        arrays into a directory they then delete.
        """
        with tempfile.TemporaryDirectory(prefix="keras-rnn-follower-") as scratch:
            save(Path(scratch))

    def record(self, record):
        if self.chief:
            self.history.record(record)

    def plan_rows(self, step):
        """Rows (real and empty) of the batch trained at global `step`."""
        return len(self.plan.batch_at(step)[1])

    def plan_tokens(self, step):
        """Real target tokens of the batch trained at global `step`.

        The plan's batch at `step` (O(1): `BatchPlan.locate` and the cached
        pass) is the batch the data pipeline yielded for it, whatever the
        pipeline and its prefetching.
        """
        _, chunk = self.plan.batch_at(step)
        return int(self.corpus.train.target_lengths[chunk[chunk >= 0]].sum())

    def validation_bleu(self, limit=None):
        """Greedy-decoding BLEU (sacreBLEU, cased) on the validation split."""
        import sacrebleu

        c = self.corpus
        sources = c.valid.source[:limit]
        hypotheses, _ = translate_ids(self.model, c.target_tokenizer, sources,
                                      method="greedy",
                                      batch_size=self.config.evaluation.batch_size)
        return float(sacrebleu.corpus_bleu(hypotheses, [c.valid_references[:limit]]).score)

    def save_best(self):
        """The best model so far: `model/model.keras` + tokenizers + config."""
        if not self.chief:
            return self._follow_save(lambda scratch: self.model.save(scratch / "model.keras"))
        target = self.directory / "model"
        temporary = self.directory / ".tmp-model"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        self.model.save(temporary / "model.keras")
        d = self.config.data
        for lang, name in ((d.source_lang, "source"), (d.target_lang, "target")):
            shutil.copy(tokenizer_path(self.config, lang), temporary / f"{name}.model")
        self.config.save(temporary / "config.yaml")
        (temporary / "best.json").write_text(json.dumps(
            {"step": self.state["step"], "val_loss": self.state["best_val_loss"]}))
        if target.exists():
            old = self.directory / ".old-model"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            shutil.rmtree(old)
        os.replace(temporary, target)

    # ---- training

    def _recorded(self, key):
        """`training.<key>` of the run directory's `config.yaml` (a resumed
        run), or None."""
        path = self.directory / "config.yaml"
        if not path.exists():
            return None
        import yaml

        return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get(
            "training", {}).get(key)

    def _pipeline_kind(self):
        kind = self.config.training.data_pipeline
        if kind == "auto":
            kind = "tf" if importlib.util.find_spec("tensorflow") else "python"
        if kind == "python" and keras.backend.backend() == "tensorflow":
            # Keras's generator adapter on TensorFlow fixes every dimension
            # from the first two batches, so bucketed shapes fail on the third.
            raise ValueError("training.data_pipeline=python is for backends without "
                             "TensorFlow (JAX); on KERAS_BACKEND=tensorflow use tf or auto.")
        return kind

    def dataset(self, start, stop):
        if self._pipeline_kind() == "tf":
            return tf_dataset(self.corpus.train, self.plan, start, stop, self.shard)
        return numpy_batches(self.corpus.train, self.plan, start, stop, self.shard)

    def valid_dataset(self):
        if self._pipeline_kind() == "tf":
            return tf_dataset(self.corpus.valid, self.valid_plan, shard=self.shard)
        return BatchList(list(numpy_batches(self.corpus.valid, self.valid_plan,
                                            shard=self.shard)))

    def resume(self):
        """The state of the newest complete checkpoint (weights loaded), or a fresh one.

        `history.jsonl` is cut back to the records of the steps and epochs
        the checkpoint holds, so a resumed run's history is the
        uninterrupted run's (the steps after the checkpoint are redone).
        """
        latest = self.checkpoints.latest()
        if latest is None:
            self.state = self.fresh_state()
        else:
            self.state = self.checkpoints.restore(self.model, latest)
            self._saved_state = dict(self.state)
            log(f"Resuming from {latest} (step {self.state['step']}, epoch {self.state['epoch']})")
        if self.chief:
            self.history.truncate(self.state["step"], self.state["epoch"])
        t = self.config.training
        if self.state["finished"] and self.state["epoch"] < t.epochs:
            if self.state["wait"] < t.early_stopping_patience:
                self.state["finished"] = False
                log(f"Continuing the finished run: training.epochs is now {t.epochs} "
                    f"(it finished after epoch {self.state['epoch']}).")
            else:
                log(f"This run stopped early after epoch {self.state['epoch']} "
                    f"({self.state['wait']} epochs without improvement); raise "
                    "training.early_stopping_patience as well to continue it.")
        return self.state

    def train(self, stop_after_steps=None):
        """Trains (or resumes) to the end. Returns the final state.

        A full disk stops the run with `DiskFull` (one line; the last
        complete checkpoint is kept, so the same command resumes).

        Args:
            stop_after_steps: stop once the global step reaches this (used to
                simulate an interruption in tests).
        """
        if not hasattr(self, "model"):
            self.setup()
        self.resume()
        try:
            with self.ctrl_c:
                return self._train(stop_after_steps)
        except OSError as error:
            if error.errno != errno.ENOSPC and "No space left" not in str(error):
                raise
            latest = self.checkpoints.latest()
            raise DiskFull(
                f"no space left on device ({error.filename or self.directory}); training "
                f"stopped at step {self.state['step']}. The last complete checkpoint, "
                f"{latest.name if latest else 'none'}, is kept: free some space and run the "
                "same command to resume.") from None

    def _train(self, stop_after_steps):
        t, S = self.config.training, self.steps_per_epoch
        controller = Controller(self)
        while True:
            step = self.state["step"]
            epoch, done = divmod(step, S)
            if done == 0 and self.state["epoch"] < epoch:
                # Killed during the validation of epoch `epoch`: its steps are
                # in the checkpoint, its validation is not. Validate it now.
                log(f"Validating epoch {epoch} (interrupted during its validation)")
                controller.validate(epoch - 1, self.valid_dataset())
                continue
            if self.state["finished"]:
                break
            if epoch >= t.epochs:
                self.state["finished"] = True
                break
            steps = S - done
            if stop_after_steps is not None:
                if step >= stop_after_steps:
                    return self.state
                steps = min(steps, stop_after_steps - step)
            partial = steps < S - done
            self.model.fit(
                # epochs=t.epochs so that the progress bar says "Epoch 3/30";
                # the callbacks stop `fit` after this one.
                self.dataset(step, step + steps), epochs=t.epochs, initial_epoch=epoch,
                steps_per_epoch=steps, shuffle=False,  # the plan has shuffled them
                validation_data=None if partial else self.valid_dataset(),
                callbacks=[PartialEpoch(controller) if partial else controller],
                verbose=self.verbose,
            )
        if self.state.get("finished"):
            if self.state != getattr(self, "_saved_state", None):
                self.save_checkpoint()
            log(f"Finished at step {self.state['step']}; best val_loss "
                f"{self.state['best_val_loss']:.4f} at step {self.state['best_step']}; "
                f"model in {self.directory / 'model'}")
        return self.state


class DiskFull(RuntimeError):
    """The disk filled up: the run stopped, its last complete checkpoint kept."""


class BatchList(keras.utils.PyDataset):
    """A fixed list of batches (the validation set without TensorFlow)."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]
