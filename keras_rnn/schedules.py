"""`ScheduledSampling`: when to feed a decoder its own predictions in training.

Bengio et al. 2015. `Seq2Seq` runs the sampling itself, in its one decoder
time loop (`keras_rnn/teacher_forcing.py`); this module only holds the
schedule. Tests: `tests/keras_rnn/test_schedules.py`.
"""

import keras
from keras import ops

from keras_rnn._checks import check_rate


@keras.saving.register_keras_serializable(package="keras_rnn")
class ScheduledSampling:
    """When to feed the decoder its own predictions in training.

    Bengio et al. 2015, "Scheduled Sampling for Sequence Prediction with
    Recurrent Neural Networks": at decoder step t > 0 of training step i the
    previous *gold* token is fed with probability `eps_i` (teacher forcing)
    and the model's own previous prediction otherwise, with `eps_i` decaying:

        linear:          eps_i = max(eps_min, k - c * i)
        exponential:     eps_i = max(eps_min, k ** i)          (k < 1)
        inverse_sigmoid: eps_i = max(eps_min, k / (k + exp(i / k)))   (k >= 1)

    Args:
        schedule: "linear", "exponential" or "inverse_sigmoid".
        k: the schedule's `k`.
        c: slope of the linear schedule.
        min_teacher_forcing: `eps_min`.
        sampling: "sample" (draw from the model's softmax, as the paper) or
            "argmax" (its most probable token).

    Example:

    >>> s = keras_rnn.ScheduledSampling("inverse_sigmoid", k=100)
    >>> round(s.teacher_forcing_probability(0), 3), round(s.teacher_forcing_probability(1000), 3)
    (0.99, 0.004)
    """

    schedules = ("linear", "exponential", "inverse_sigmoid")

    def __init__(self, schedule="inverse_sigmoid", k=1000.0, c=1e-4,
                 min_teacher_forcing=0.0, sampling="sample"):
        if schedule not in self.schedules:
            raise ValueError(f"schedule must be one of {self.schedules}; got {schedule!r}.")
        if schedule == "exponential" and not 0 < k < 1:
            raise ValueError(f"k must be in (0, 1) for the exponential schedule; got {k!r}.")
        if schedule == "inverse_sigmoid" and not k >= 1:
            raise ValueError(f"k must be >= 1 for the inverse_sigmoid schedule; got {k!r}.")
        if schedule == "linear" and not k > 0:
            raise ValueError(f"k must be > 0 for the linear schedule; got {k!r}.")
        if sampling not in ("sample", "argmax"):
            raise ValueError(f"sampling must be 'sample' or 'argmax'; got {sampling!r}.")
        self.schedule = schedule
        self.k = float(k)
        self.c = float(c)
        self.min_teacher_forcing = check_rate("min_teacher_forcing", min_teacher_forcing)
        self.sampling = sampling

    def teacher_forcing_probability(self, step):
        """`eps_i` for training step `step` (Python number or tensor)."""
        step = ops.cast(step, "float32")
        if self.schedule == "linear":
            eps = self.k - self.c * step
        elif self.schedule == "exponential":
            eps = ops.power(self.k, step)
        else:
            eps = self.k / (self.k + ops.exp(ops.minimum(step / self.k, 80.0)))
        return ops.clip(eps, self.min_teacher_forcing, 1.0)

    def sampling_probability(self, step):
        """`1 - eps_i`: probability of feeding the model's own prediction."""
        return 1.0 - self.teacher_forcing_probability(step)

    def get_config(self):
        return {
            "schedule": self.schedule,
            "k": self.k,
            "c": self.c,
            "min_teacher_forcing": self.min_teacher_forcing,
            "sampling": self.sampling,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
