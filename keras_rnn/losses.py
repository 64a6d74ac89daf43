"""`SequenceLoss`: masked token-level cross-entropy for sequence models.

Szegedy et al. 2016 (label smoothing). Tests: `tests/keras_rnn/test_losses.py`.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_rnn")
class SequenceLoss(keras.losses.Loss):
    """Token-level cross-entropy over the non-padding target tokens.

    With label smoothing `eps` over a vocabulary of `V` tokens (Szegedy et
    al. 2016) the target distribution is `q = (1 - eps) onehot(y) + eps / V`
    and the loss of one token is

        l_t = -sum_v q_v log p_v = (1 - eps) (-log p_y) + eps * mean_v(-log p_v)

    The batch loss is `sum_t w_t l_t / sum_t w_t` with `w_t = 0` on padding
    (`y_t == pad_id`) and 1 (or the sample weight) elsewhere: every real
    token counts the same, whatever the sentence lengths.

    Args:
        pad_id: target id that is padding.
        label_smoothing: `eps` in [0, 1).
        from_logits: `y_pred` are logits (True) or probabilities.

    Call arguments:
        y_true: `(batch, time)` int target ids.
        y_pred: `(batch, time, vocab)` logits.
        sample_weight: optional `(batch,)` or `(batch, time)` weights.

    Returns:
        float32 scalar.
    """

    def __init__(self, pad_id=0, label_smoothing=0.0, from_logits=True,
                 name="sequence_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"label_smoothing must be in [0, 1); got {label_smoothing!r}."
            )
        self.pad_id = int(pad_id)
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        """Per-token losses `(batch, time)` (zero on padding)."""
        y_true = ops.cast(y_true, "int32")
        y_pred = ops.cast(y_pred, "float32")
        eps = self.label_smoothing
        if self.from_logits:
            # `q` as a dense target and the backend's fused softmax
            # cross-entropy (TensorFlow: `softmax_cross_entropy_with_logits`,
            # whose kernel returns the gradient `softmax - q` too). Gathering
            # `log p_y` instead costs a scatter over `(batch, time, vocab)` in
            # the backward pass: 2.1x slower on TensorFlow/CPU for a
            # 2,040 x 8,000 batch (benchmarks/README.md, issue 25).
            vocab = y_pred.shape[-1]
            q = ops.one_hot(y_true, vocab) * (1.0 - eps) + eps / vocab
            nll = ops.categorical_crossentropy(q, y_pred, from_logits=True)
        else:
            log_p = ops.log(ops.clip(y_pred, 1e-12, 1.0))
            nll = -ops.take_along_axis(log_p, ops.expand_dims(y_true, -1), axis=-1)[..., 0]
            if eps:
                nll = (1.0 - eps) * nll - eps * ops.mean(log_p, axis=-1)
        return ops.where(ops.not_equal(y_true, self.pad_id), nll, 0.0)

    def __call__(self, y_true, y_pred, sample_weight=None):
        losses = self.call(y_true, y_pred)
        weights = ops.cast(ops.not_equal(ops.cast(y_true, "int32"), self.pad_id), "float32")
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, "float32")
            if len(sample_weight.shape) == 1:
                sample_weight = ops.expand_dims(sample_weight, -1)
            weights = weights * sample_weight
        # Under tf.distribute each replica divides by the token count of the
        # whole global batch: Keras sums the replicas' gradients, so they
        # add up to the gradient of the global token mean whatever the split.
        count = _global_sum(ops.sum(weights))
        return ops.sum(losses * weights) / ops.maximum(count, 1.0)

    def get_config(self):
        return {
            "name": self.name,
            "pad_id": self.pad_id,
            "label_smoothing": self.label_smoothing,
            "from_logits": self.from_logits,
        }


def _global_sum(value):
    """`value` summed over the replicas of a `tf.distribute` strategy."""
    if keras.backend.backend() != "tensorflow":
        return value
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)
