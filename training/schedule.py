"""The learning rate of a training run: linear warm-up, then cut on plateaus.

    lr(step) = max(min_learning_rate,
                   learning_rate * min(1, (step + 1) / warmup_steps) * lr_scale)

`lr_scale` starts at 1 and is multiplied by `plateau_factor` each time the
validation loss has not improved for `plateau_patience` epochs. Both it and
the plateau counter live in the run's state, so a resumed run continues the
schedule where the checkpoint left it.
"""


class LearningRate:
    """Warm-up and reduce-on-plateau, read from and written to the run's state.

    Args:
        training: the run's `TrainingConfig`.
    """

    def __init__(self, training):
        self.training = training

    def __call__(self, state):
        """The learning rate of the step `state["step"]`."""
        t = self.training
        warmup = min(1.0, (state["step"] + 1) / max(1, t.warmup_steps))
        return max(t.min_learning_rate, t.learning_rate * warmup * state["lr_scale"])

    def end_epoch(self, state, improved):
        """Counts a validated epoch; returns a message when the rate is cut."""
        t = self.training
        if improved:
            state["plateau_wait"] = 0
            return None
        state["plateau_wait"] += 1
        if state["plateau_wait"] < t.plateau_patience:
            return None
        state["lr_scale"] *= t.plateau_factor
        state["plateau_wait"] = 0
        return (f"Validation loss has not improved for {t.plateau_patience} "
                f"epoch(s): learning rate x{t.plateau_factor} -> {self(state):.2e}")
