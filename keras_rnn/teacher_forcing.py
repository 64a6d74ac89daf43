"""The training-time decoder loop of `Seq2Seq`: teacher forcing, optionally
with scheduled sampling, in one backend time loop (`tf.while_loop` /
`jax.lax.scan`), differentiable on both backends.

`Seq2Seq.teacher_forced` and `Seq2Seq.call` run `decoder_loop`; it reads
the model's layers (embedding, dropout, `AttentionWrapper` decoder,
projection) and, with scheduled sampling, its schedule, step counter and
sampling seed. Bengio et al. 2015 (scheduled sampling). Tests:
`tests/keras_rnn/test_seq2seq_model.py`.
"""

import keras
from keras import ops

from keras_rnn import _keras_private
from keras_rnn._cell import per_step_noise


def decoder_loop(model, target, memory, state, training, alignments):
    """The decoder's one time loop over a gold target prefix.

    Teacher forcing: step t reads the gold token `target[:, t]`; the
    embeddings (with their dropout) are computed for all steps before
    the loop and the projection to the vocabulary after it.

    Scheduled sampling (in training with `scheduled_sampling`): at step
    t > 0 the input is the gold token with probability `eps_i`
    (`ScheduledSampling`) and the model's prediction from step t - 1
    otherwise, so each step embeds its token and projects its output
    inside the loop. The coins, the Gumbel noise of "sample" and the
    embedding and output dropout masks are drawn before the loop.

    Either way the decoder cells' noise (dropout, zoneout) is drawn once,
    before the loop (`AttentionWrapper.draw_noise`).

    Args:
        model: the `Seq2Seq`.
        target: `(batch, T)` int32 decoder inputs `[bos, y_1, ..., y_{T-1}]`.
        memory: the encoder's `AttentionMemory`.
        state: the decoder's initial `AttentionWrapperState`.
        training: Python bool (dropout, zoneout, scheduled sampling).
        alignments: also return the attention weights.

    Returns:
        `(logits, alignments)`: `(batch, T, vocab)` and the float32
        `(batch, T, S)` attention weights, or None without `alignments`.
    """
    sampling = bool(training and model.scheduled_sampling is not None)
    gold = ops.transpose(target, (1, 0))  # (T, batch)
    steps, batch = ops.shape(gold)[0], ops.shape(gold)[1]
    if sampling:
        feed = sampling_feed(model, gold)
    else:
        x = model.embedding_dropout_layer(
            model.target_embedding(target), training=training
        )
        feed = (ops.transpose(x, (1, 0, 2)),)  # (T, batch, emb)
    wrapper = model.decoder
    noise = wrapper.draw_noise(
        batch, model.embedding_dim, model.encoder_output_size, training,
        steps=steps,
    )
    per_step, noise_at = per_step_noise(noise)
    flat_state = keras.tree.flatten(state)
    if sampling:  # the previous prediction rides along with the state
        flat_state = [ops.zeros((batch,), "int32")] + flat_state

    def step(inputs, states):
        feed_t, noise_t = inputs
        if sampling:
            gold_t, use_model_t, gumbel_t, keep_t, embedding_keep_t = feed_t
            previous, states = states[0], states[1:]
            tokens = ops.where(use_model_t[:, 0], previous, gold_t[:, 0])
            x_t = model.target_embedding(tokens)
            x_t = x_t * ops.cast(embedding_keep_t, x_t.dtype)
        else:
            (x_t,) = feed_t
        state_t = keras.tree.pack_sequence_as(state, states)
        output, state_t = wrapper.call(
            x_t, state_t, memory, training=training, noise=noise_at(noise_t)
        )
        new_states = keras.tree.flatten(state_t)
        if sampling:
            output = output * ops.cast(keep_t, output.dtype)
            if model.pre_output is not None:
                output = model.pre_output(output)
            logits = ops.cast(model._logits(output), "float32")
            prediction = ops.cast(ops.argmax(logits + gumbel_t, axis=-1), "int32")
            output, new_states = logits, [prediction] + new_states
        if alignments:
            output = ops.concatenate(
                [ops.cast(output, "float32"), state_t.alignments], axis=-1
            )
        return output, new_states

    _, outputs, _ = _keras_private.rnn(
        step, (feed, per_step), flat_state, time_major=True,
    )
    wrapper.reset_noise()
    outputs = ops.transpose(outputs, (1, 0, 2))  # (batch, T, width [+ S])
    width = model.target_vocab_size if sampling else model.output_size
    weights = outputs[..., width:] if alignments else None
    if sampling:
        return outputs[..., :width], weights
    if alignments:
        outputs = ops.cast(outputs[..., :width], model.compute_dtype)
    return model.project(outputs, training=training), weights


def sampling_feed(model, gold):
    """Scheduled sampling's per-step loop inputs, drawn before the loop.

    Advances the model's `sampling_step` by one.

    Args:
        model: the `Seq2Seq` (its schedule, step counter and sampling seed).
        gold: `(T, batch)` int32 gold decoder inputs.

    Returns:
        `(gold, use_model, gumbel, keep, embedding_keep)`, time-major:
        `(T, batch, 1)` gold tokens and coins (True: feed the model's
        prediction; never at step 0, which reads the gold BOS),
        `(T, batch, vocab)` Gumbel noise (zeros `(T, batch, 1)` for
        "argmax"), and the output and embedding dropout masks.
    """
    schedule = model.scheduled_sampling
    p_sample = schedule.sampling_probability(model.sampling_step)
    model.sampling_step.assign(model.sampling_step + 1)
    steps, batch = ops.shape(gold)[0], ops.shape(gold)[1]
    coins = keras.random.uniform((steps, batch), seed=model.sampling_seed)
    use_model = ops.less(coins, ops.cast(p_sample, "float32"))  # (T, batch)
    gumbel = ops.zeros((steps, batch, 1))
    if schedule.sampling == "sample":
        uniform = keras.random.uniform(
            (steps, batch, model.target_vocab_size), minval=1e-9, maxval=1.0,
            seed=model.sampling_seed,
        )
        gumbel = -ops.log(-ops.log(uniform))  # Gumbel: argmax = a sample
    # Embedding and output dropout as masks drawn outside the loop.
    keep = _dropout_mask((steps, batch, model.output_size), model.output_dropout,
                         model.sampling_seed)
    embedding_keep = _dropout_mask((steps, batch, model.embedding_dim),
                                   model.embedding_dropout, model.sampling_seed)
    # The first step always takes the gold BOS.
    use_model = ops.concatenate(
        [ops.zeros((1, batch), "bool"), use_model[1:]], axis=0
    )
    # TensorFlow's loop wants inputs of rank >= 3: (T, batch, 1).
    return (ops.expand_dims(gold, -1), ops.expand_dims(use_model, -1),
            gumbel, keep, embedding_keep)


# ------------------------------------------------------------------ helpers


def _dropout_mask(shape, rate, seed):
    """Inverted-dropout mask (values 0 and 1 / (1 - rate)), or ones."""
    ones = ops.ones(shape)
    if not rate:
        return ones
    return keras.random.dropout(ones, rate, seed=seed)
