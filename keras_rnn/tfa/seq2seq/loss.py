"""TF Addons' `sequence_loss` and `SequenceLoss` (weights-based), over the
per-token cross-entropy of `keras_rnn.SequenceLoss`."""

import keras
from keras import ops

from keras_rnn import losses

# No target id is -1: the core loss then masks nothing, the weights do.
_NO_PAD = -1


def _div_no_nan(a, b):
    return ops.where(ops.equal(b, 0), ops.zeros_like(a), a / ops.where(
        ops.equal(b, 0), ops.ones_like(b), b))


def sequence_loss(logits, targets, weights, average_across_timesteps=True,
                  average_across_batch=True, sum_over_timesteps=False,
                  sum_over_batch=False, softmax_loss_function=None, name=None):
    """`tfa.seq2seq.sequence_loss`: weighted cross-entropy of a sequence.

    Args:
        logits: `(batch, time, vocab)`.
        targets: `(batch, time)` int ids (sparse cross-entropy), or
            `(batch, time, vocab)` one-hot or probability targets
            (`-sum_v targets_v log softmax(logits)_v`, TF Addons'
            `softmax_cross_entropy_with_logits`).
        weights: `(batch, time)` float weights.
        average_across_timesteps, average_across_batch: divide the summed
            loss by the summed weights over that axis.
        sum_over_timesteps, sum_over_batch: divide by the count of nonzero
            weights instead.
        softmax_loss_function: optional `f(labels=, logits=)` per-token loss
            on the flattened labels (`targets` reshaped to `(-1,)`, as TF
            Addons) and `(batch * time, vocab)` logits.
        name: unused.

    Raises:
        ValueError: on a wrong rank, on both an average and a sum over one
            axis, and on the two orders TF Addons calls ambiguous:
            `average_across_batch` with `sum_over_timesteps`, and
            `sum_over_batch` with `average_across_timesteps`.

    Returns:
        A scalar, `(batch,)`, `(time,)` or `(batch, time)` float32 tensor,
        as TF Addons.
    """
    if len(logits.shape) != 3:
        raise ValueError("Logits must be a [batch_size x sequence_length x logits] tensor")
    targets_rank = len(targets.shape)
    if targets_rank not in (2, 3):
        raise ValueError(
            "Targets must be either a [batch_size x sequence_length] tensor "
            "where each element contains the labels' index or a [batch_size "
            "x sequence_length x num_classes] tensor where the third axis is "
            "a one-hot representation of the labels")
    if len(weights.shape) != 2:
        raise ValueError("Weights must be a [batch_size x sequence_length] tensor")
    if average_across_timesteps and sum_over_timesteps:
        raise ValueError("average_across_timesteps and sum_over_timesteps cannot "
                         "be set to True at same time.")
    if average_across_batch and sum_over_batch:
        raise ValueError("average_across_batch and sum_over_batch cannot be set "
                         "to True at same time.")
    if average_across_batch and sum_over_timesteps:
        raise ValueError("average_across_batch and sum_over_timesteps cannot be "
                         "set to True at same time because of ambiguous order.")
    if sum_over_batch and average_across_timesteps:
        raise ValueError("sum_over_batch and average_across_timesteps cannot be "
                         "set to True at same time because of ambiguous order.")
    weights = ops.cast(weights, "float32")
    batch_time = ops.shape(logits)[:2]
    if softmax_loss_function is not None:
        vocab = ops.shape(logits)[-1]
        crossent = ops.reshape(softmax_loss_function(
            labels=ops.reshape(targets, (-1,)),
            logits=ops.reshape(logits, (-1, vocab))), batch_time)
    elif targets_rank == 2:  # ids: sparse softmax cross-entropy
        crossent = losses.SequenceLoss(pad_id=_NO_PAD).call(targets, logits)
    else:  # distributions: softmax cross-entropy
        log_p = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        crossent = -ops.sum(ops.cast(targets, "float32") * log_p, axis=-1)
    crossent = ops.cast(crossent, "float32") * weights
    nonzero = ops.cast(ops.not_equal(weights, 0), "float32")
    if average_across_timesteps and average_across_batch:
        return _div_no_nan(ops.sum(crossent), ops.sum(weights))
    if sum_over_timesteps and sum_over_batch:
        return _div_no_nan(ops.sum(crossent), ops.sum(nonzero))
    if average_across_timesteps or average_across_batch:
        axis = 0 if average_across_batch else 1
        return _div_no_nan(ops.sum(crossent, axis), ops.sum(weights, axis))
    if sum_over_timesteps or sum_over_batch:
        axis = 0 if sum_over_batch else 1
        return _div_no_nan(ops.sum(crossent, axis), ops.sum(nonzero, axis))
    return crossent


@keras.saving.register_keras_serializable(package="keras_rnn.seq2seq")
class SequenceLoss(keras.losses.Loss):
    """`tfa.seq2seq.SequenceLoss`: `sequence_loss` as a Keras loss, with TF
    Addons' defaults (sum over time and batch, divided by the count of
    nonzero weights). `y_true` is `(batch, time)` ids or `(batch, time,
    vocab)` one-hot targets; `sample_weight` the `(batch, time)` weights
    (ones when None)."""

    def __init__(self, average_across_timesteps=False, average_across_batch=False,
                 sum_over_timesteps=True, sum_over_batch=True,
                 softmax_loss_function=None, name=None, **kwargs):
        super().__init__(name=name or "sequence_loss", **kwargs)
        self.average_across_timesteps = average_across_timesteps
        self.average_across_batch = average_across_batch
        self.sum_over_timesteps = sum_over_timesteps
        self.sum_over_batch = sum_over_batch
        self.softmax_loss_function = softmax_loss_function

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is None:
            sample_weight = ops.ones(ops.shape(y_pred)[:2], "float32")
        return sequence_loss(
            y_pred, y_true, sample_weight,
            average_across_timesteps=self.average_across_timesteps,
            average_across_batch=self.average_across_batch,
            sum_over_timesteps=self.sum_over_timesteps,
            sum_over_batch=self.sum_over_batch,
            softmax_loss_function=self.softmax_loss_function)

    def call(self, y_true, y_pred):
        return self(y_true, y_pred)

    def get_config(self):
        return {
            "name": self.name,
            "average_across_timesteps": self.average_across_timesteps,
            "average_across_batch": self.average_across_batch,
            "sum_over_timesteps": self.sum_over_timesteps,
            "sum_over_batch": self.sum_over_batch,
        }
