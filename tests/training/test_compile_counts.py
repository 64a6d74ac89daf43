"""What a training run costs that grows with the run, counted, not timed.

On JAX, every `jit` compilation is logged with its function and argument
shapes (`jax_log_compiles`): a run must compile its training step once per
batch shape, and never again for a shape it has seen, in later epochs or
after a resume (a recompilation per step or per epoch would make late epochs
slower than early ones; issue 17, part 2).
"""

import logging
import re

import numpy as np
import pytest

from tests.support import BACKEND, MULTI30K, write_config

pytestmark = [
    pytest.mark.skipif(BACKEND != "jax", reason="counts JAX compilations"),
    pytest.mark.skipif(not MULTI30K.exists(), reason="no shared Multi30k copy"),
]

COMPILING = re.compile(r"^Compiling (\S+) with global shapes and types (.*?)\. Argument mapping")


class Compilations(logging.Handler):
    """Collects `(function, shapes)` of every JAX compilation while installed."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.seen = []

    def emit(self, record):
        match = COMPILING.match(record.getMessage())
        if match:
            self.seen.append((match[1], match[2]))

    def __enter__(self):
        import jax

        self._flag = jax.config.jax_log_compiles
        jax.config.update("jax_log_compiles", True)
        logging.getLogger("jax").addHandler(self)
        return self

    def __exit__(self, *error):
        import jax

        logging.getLogger("jax").removeHandler(self)
        jax.config.update("jax_log_compiles", self._flag)


def test_jax_compiles_the_training_step_once_per_batch_shape(tmp_path):
    from keras_rnn.training.config import Config
    from keras_rnn.training.train import TrainingRun

    config = Config.load(write_config(tmp_path, "compiles", training={
        "epochs": 3, "steps_per_epoch": 6, "validation_bleu": False,
        "checkpoint_every": 100, "log_every": 100, "jit_compile": "auto"}))
    run = TrainingRun(config)
    run.setup()
    assert run.model.jit_compile  # auto: XLA on JAX
    per_epoch = []
    with Compilations() as compilations:
        for epoch in (1, 2, 3):  # each call resumes from the last checkpoint
            before = len(compilations.seen)
            run.train(stop_after_steps=6 * epoch)
            per_epoch.append(compilations.seen[before:])
    train_steps = [shapes for epoch in per_epoch
                   for function, shapes in epoch if "train_step" in function]
    # One compilation per distinct batch shape trained, none repeated.
    trained_shapes = {(len(chunk), length) for length, chunk in
                      (run.plan.batch_at(step) for step in range(18))}
    assert len(train_steps) == len(set(train_steps)) == len(trained_shapes)
    # Later epochs compile only the shapes they meet for the first time.
    first_epoch_shapes = {(len(c), n) for n, c in (run.plan.batch_at(s) for s in range(6))}
    assert len([s for f, s in per_epoch[0] if "train_step" in f]) == len(first_epoch_shapes)
    # Validation (fixed shapes) compiles in the first epoch only.
    assert any("test_step" in f for f, _ in per_epoch[0])
    assert not [f for epoch in per_epoch[1:] for f, _ in epoch if "test_step" in f]
    assert np.isfinite(run.state["best_val_loss"])
