"""`training.bucket_width: auto` (issue 25, part 1): 8 where XLA compiles the
training step once per bucket shape, 4 where one traced step serves every
shape (TensorFlow without XLA), and a resumed run keeps the width it
started with, so its batch stream is the one its checkpoints saw."""

import pytest
import yaml

from keras_rnn.training.config import Config, bucket_width_for
from tests.support import BACKEND, MULTI30K, write_config


def test_auto_is_8_under_xla_4_without_and_a_started_run_keeps_its_width():
    assert bucket_width_for("auto", xla=True) == (8, "auto: XLA compiles each bucket shape")
    assert bucket_width_for("auto", xla=False)[0] == 4
    assert bucket_width_for("auto", xla=True, recorded=4) == (4, "auto: as this run started")
    assert bucket_width_for("auto", xla=False, recorded="auto")[0] == 4  # not yet resolved
    assert bucket_width_for(6, xla=True, recorded=4) == (6, "training.bucket_width")


@pytest.mark.parametrize("value", ["eight", 0, 2.5, True])
def test_a_bad_bucket_width_is_named(tmp_path, value):
    with pytest.raises(ValueError, match=r"training.bucket_width must be a positive integer "
                                         r"or auto; got"):
        Config.load(write_config(tmp_path, "bad", training={"bucket_width": value}))


@pytest.mark.skipif(not MULTI30K.exists(), reason="no shared Multi30k copy")
def test_a_run_records_the_width_auto_chose_and_resumes_with_it(tmp_path):
    from keras_rnn.training.train import TrainingRun

    path = write_config(tmp_path, "auto", training={"bucket_width": "auto",
                                                     "jit_compile": "auto"})
    run = TrainingRun(Config.load(path))
    run.setup()
    chosen = 8 if BACKEND == "jax" else 4  # XLA on JAX; none on a CPU-only TensorFlow
    assert run.plan.bucket_width == run.valid_plan.bucket_width == chosen
    saved = run.directory / "config.yaml"
    assert yaml.safe_load(saved.read_text())["training"]["bucket_width"] == chosen
    # A run started elsewhere with another width resumes with that one.
    values = yaml.safe_load(saved.read_text())
    values["training"]["bucket_width"] = 6
    saved.write_text(yaml.safe_dump(values))
    again = TrainingRun(Config.load(path))
    again.setup()
    assert again.plan.bucket_width == 6


@pytest.mark.skipif(BACKEND != "tensorflow", reason="counts TensorFlow traces")
@pytest.mark.skipif(not MULTI30K.exists(), reason="no shared Multi30k copy")
def test_tensorflow_without_xla_traces_one_training_step_for_every_bucket_shape(tmp_path):
    # Why auto is 4 here: the tf.data batches have shape (None, None), so
    # `fit` traces the step once and every bucket shape runs that graph; a
    # wider bucket would only add padding. (The Python `train_step` runs
    # only while tracing.)
    from keras_rnn.training.train import TrainingRun

    run = TrainingRun(Config.load(write_config(tmp_path, "traces", training={
        "epochs": 1, "steps_per_epoch": 8, "bucket_width": "auto", "jit_compile": "auto",
        "validation_bleu": False, "checkpoint_every": 100, "log_every": 100})))
    run.setup()
    assert not run.model.jit_compile
    traces = []
    step = run.model.train_step
    run.model.train_step = lambda data: traces.append(1) or step(data)
    run.train()
    shapes = {(len(chunk), length) for length, chunk in (run.plan.batch_at(s) for s in range(8))}
    assert len(shapes) >= 3
    assert len(traces) == 1
