"""When a training run ends: the epoch budget, or early stopping.

The best validation loss, its step and the count of epochs without
improvement live in the run's state. A run ends after `training.epochs`
epochs, or after `early_stopping_patience` epochs without improvement (the
best model is kept in `model/` all along).
"""

import math


class EarlyStopping:
    """Tracks the best validation loss and decides when the run is over.

    Args:
        training: the run's `TrainingConfig`.
    """

    def __init__(self, training):
        self.training = training

    def end_epoch(self, state, val_loss):
        """Counts a validated epoch. Returns `(improved, message or None)`."""
        improved = val_loss < state["best_val_loss"]
        if improved:
            state.update(best_val_loss=val_loss, best_step=state["step"], wait=0)
            return True, None
        state["wait"] += 1
        if state["wait"] >= self.training.early_stopping_patience:
            state["finished"] = True
            return False, (f"Early stop: no improvement for {state['wait']} epochs "
                           f"(best val_loss {state['best_val_loss']:.4f} at step "
                           f"{state['best_step']}).")
        return False, None

    def epoch_budget_spent(self, state):
        """Marks the run finished once `training.epochs` epochs are validated."""
        if state["epoch"] >= self.training.epochs:
            state["finished"] = True
        return state["finished"]


def fresh_state():
    """The state of a run before its first step (saved in every checkpoint).

    `step`: global steps trained; `epoch`: epochs validated; `phase`: "train"
    inside an epoch, "validate" once an epoch's steps are done and before its
    validation is (a checkpoint at the epoch's last step says so, and a run
    resumed from it validates that epoch); `epoch_loss`: `[sum, rows]` of the
    current epoch's batch losses weighted by batch rows (Keras's running
    mean), so an epoch interrupted and resumed logs the same loss.
    """
    return dict(step=0, epoch=0, phase="train", epoch_loss=[0.0, 0], lr_scale=1.0,
                best_val_loss=math.inf, best_step=0, wait=0, plateau_wait=0, finished=False)
