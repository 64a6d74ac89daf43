"""The Keras callback that drives a training run, step by step and epoch by epoch.

It holds no policy of its own; each concern has one home:

- the learning rate (warm-up, plateau cuts): `training.schedule.LearningRate`;
- when the run ends (epoch budget, early stopping): `training.stopping`;
- checkpoints: `training.checkpoints.Checkpoints` (through the run);
- history records, console lines, tokens/s: `training.history`.

The controller applies the learning rate before each step, counts steps and
tokens, writes a history record every `log_every` steps and a checkpoint
every `checkpoint_every` steps, and at each epoch end runs the validation
bookkeeping (`end_epoch`).
"""

import math
import signal
import threading

import keras

from keras_rnn.training import faults
from keras_rnn.training.history import Throughput, format_record, log
from keras_rnn.training.schedule import LearningRate
from keras_rnn.training.stopping import EarlyStopping


class Interrupted(Exception):
    """Ctrl-C stopped the run; the message names the checkpoint written."""


class CtrlC:
    """While entered, the first SIGINT asks the run to stop (`requested`);
    the controller then checkpoints the step in progress and raises
    `Interrupted`. A second SIGINT raises `KeyboardInterrupt` at once.
    Outside the main thread (no signal handlers there) it does nothing."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *error):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class Controller(keras.callbacks.Callback):
    """Learning rate, history, checkpoints and epoch ends of a `TrainingRun`.

    Args:
        run: the `TrainingRun` (config, plan, checkpoints, state).
    """

    def __init__(self, run):
        super().__init__()
        self.run = run
        self.schedule = LearningRate(run.config.training)
        self.stopping = EarlyStopping(run.config.training)
        self.throughput = Throughput()
        self._rate = None
        self._loss_base, self._rows = [0.0, 0], 0

    def on_epoch_begin(self, epoch, logs=None):
        # Keras's loss is a running mean over this `fit` call, weighted by
        # batch rows; the state adds it to what the epoch had before a resume.
        self._loss_base, self._rows = list(self.state["epoch_loss"]), 0

    @property
    def state(self):
        return self.run.state

    def learning_rate(self):
        return self.schedule(self.state)

    def on_train_batch_begin(self, batch, logs=None):
        self.throughput.start()
        rate = self.learning_rate()
        if rate != self._rate:
            # `self.model` syncs JAX's in-flight state into the variables and
            # makes fit read it back, so the assignment reaches the next step.
            self.model.optimizer.learning_rate.assign(rate)
            self._rate = rate

    def on_train_batch_end(self, batch, logs=None):
        run, t = self.run, self.run.config.training
        rate = self.throughput.add(run.plan_tokens(self.state["step"]))
        self._rows += run.plan_rows(self.state["step"])
        if logs and "loss" in logs:
            base_sum, base_rows = self._loss_base
            self.state["epoch_loss"] = [base_sum + float(logs["loss"]) * self._rows,
                                        base_rows + self._rows]
        self.state["step"] += 1
        if logs is not None:
            logs["tok_s"] = rate
        step = self.state["step"]
        if step % run.steps_per_epoch == 0:
            self.state["phase"] = "validate"  # the epoch's steps are done
        faults.point("step", step)
        if step % t.log_every == 0:
            record = dict(kind="train", step=step, epoch=self.state["epoch"],
                          loss=self.epoch_loss(), tokens_per_second=rate,
                          learning_rate=float(self.learning_rate()))
            run.record(record)
            if run.verbose == 2:  # no progress bar: one line per window
                log(format_record(record))
            self.throughput.restart()
        if step % t.checkpoint_every == 0 or run.ctrl_c.requested:
            self.model  # on JAX: sync the in-flight state into the variables
            run.save_checkpoint()
        self.stop_if_requested()

    def stop_if_requested(self):
        """After Ctrl-C: raises `Interrupted` (the step's checkpoint is written)."""
        if self.run.ctrl_c.requested:
            latest = self.run.checkpoints.latest()
            raise Interrupted(f"interrupted at step {self.state['step']}; checkpoint "
                              f"{latest} written (run the same command to resume).")

    def epoch_loss(self):
        """The mean batch loss of the current epoch so far (weighted by rows)."""
        total, rows = self.state["epoch_loss"]
        return total / rows if rows else math.nan

    def on_test_begin(self, logs=None):
        faults.point("validation", self.state["step"])

    def validate(self, epoch, dataset):
        """Validates epoch `epoch` (0-based) whose steps are done: a resume
        from a checkpoint written before that epoch's validation."""
        model = self.run.model
        result = model.evaluate(dataset, callbacks=[self], verbose=0, return_dict=True)
        self.end_epoch(epoch, {"val_loss": result["loss"]})

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        self.end_epoch(epoch, logs)
        # One `fit` call per epoch: `TrainingRun.train` starts the next one.
        self.model.stop_training = True

    def end_epoch(self, epoch, logs):
        """Validation BLEU, best model, plateau, early stop, record, checkpoint."""
        run, t = self.run, self.run.config.training
        self.state["epoch"] = epoch + 1
        val_loss = float(logs.get("val_loss", math.nan))
        record = dict(kind="epoch", step=self.state["step"], epoch=epoch + 1,
                      loss=self.epoch_loss(), val_loss=val_loss,
                      learning_rate=float(self.learning_rate()))
        if t.validation_bleu:
            faults.point("validation.bleu", self.state["step"])
            record["val_bleu"] = run.validation_bleu()
            logs["val_bleu"] = record["val_bleu"]
        improved, stop_message = self.stopping.end_epoch(self.state, val_loss)
        if improved:
            run.save_best()
            faults.point("validation.best", self.state["step"])
        plateau_message = self.schedule.end_epoch(self.state, improved)
        for message in (plateau_message, stop_message):
            if message:
                log(message)
        self.stopping.epoch_budget_spent(self.state)
        run.record(record)
        log(format_record(record))
        self.state.update(phase="train", epoch_loss=[0.0, 0])
        run.save_checkpoint()
        self.throughput.reset()
        self.stop_if_requested()


class PartialEpoch(keras.callbacks.Callback):
    """The controller's batch hooks only (a run stopped inside an epoch)."""

    def __init__(self, controller):
        super().__init__()
        self.controller = controller

    def set_model(self, model):
        super().set_model(model)
        self.controller.set_model(model)

    def on_epoch_begin(self, epoch, logs=None):
        self.controller.on_epoch_begin(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self.controller.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.controller.on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.controller.run.save_checkpoint()
