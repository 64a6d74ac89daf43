"""keras_rnn.schedules: ScheduledSampling's formulas and checks."""

import numpy as np
import pytest

from keras import ops

import keras_rnn


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def test_schedules_follow_their_formulas():
    steps = np.array([0.0, 10.0, 500.0, 5000.0])
    linear = keras_rnn.ScheduledSampling("linear", k=1.0, c=1e-3, min_teacher_forcing=0.1)
    np.testing.assert_allclose(_np(linear.teacher_forcing_probability(steps)),
                               np.maximum(0.1, 1.0 - 1e-3 * steps), rtol=1e-6)
    exponential = keras_rnn.ScheduledSampling("exponential", k=0.999)
    np.testing.assert_allclose(_np(exponential.teacher_forcing_probability(steps)),
                               0.999 ** steps, rtol=2e-4)
    sigmoid = keras_rnn.ScheduledSampling("inverse_sigmoid", k=100.0)
    np.testing.assert_allclose(_np(sigmoid.teacher_forcing_probability(steps)),
                               100 / (100 + np.exp(steps / 100)), rtol=1e-5)
    np.testing.assert_allclose(_np(sigmoid.sampling_probability(steps)),
                               1 - 100 / (100 + np.exp(steps / 100)), rtol=1e-5)
    for bad in (dict(schedule="cosine"), dict(schedule="exponential", k=2.0),
                dict(schedule="inverse_sigmoid", k=0.5), dict(sampling="beam")):
        with pytest.raises(ValueError, match=next(iter(bad))):
            keras_rnn.ScheduledSampling(**bad)
