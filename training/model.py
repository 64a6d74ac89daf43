"""The compiled `keras_rnn.Seq2Seq` of a training config.

`ModelConfig`'s fields are `keras_rnn.Seq2Seq`'s arguments, name for name,
so `build_model` passes them on as one dict (as nanoGPT's
`GPTConfig(**model_args)`); a new model argument needs only a new field.
Only what the model section cannot hold is added here: the vocabulary sizes
(from the tokenizers), the seed (`training.seed`), the decoding defaults
saved with the model (`evaluation`, capped by `data.max_length`), and the
optimizer, loss and XLA setting of `compile` (`training`).
"""

import dataclasses

import keras

import keras_rnn


def jit_compile_for(setting):
    """`(use_xla, reason)` for `training.jit_compile` (true, false or auto).

    auto: XLA on JAX always (without `jit` JAX traces and compiles every
    `lax.scan` anew at each step); on TensorFlow only on a GPU, since on a
    CPU the full-size configs train faster without it (measured in
    benchmarks/README.md, "Training on Multi30k", Speed).
    """
    if setting != "auto":
        return bool(setting), "training.jit_compile"
    backend = keras.backend.backend()
    if backend == "jax":
        return True, "auto: always on JAX"
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return True, "auto: TensorFlow on a GPU"
        return False, "auto: TensorFlow on CPU, where XLA is slower"
    return False, f"auto: backend {backend}"


def build_model(config, source_vocab_size, target_vocab_size):
    """The built and compiled `keras_rnn.Seq2Seq` of a `Config`.

    Args:
        config: the run's `Config`; its `model` section holds the
            constructor's arguments.
        source_vocab_size, target_vocab_size: the tokenizers' sizes.
    """
    t = config.training
    model = make_model(config, source_vocab_size, target_vocab_size)
    optimizer = keras.optimizers.Adam(t.learning_rate, global_clipnorm=t.clip_norm)
    model.compile(
        optimizer,
        keras_rnn.SequenceLoss(label_smoothing=t.label_smoothing),
        jit_compile=jit_compile_for(t.jit_compile)[0],
    )
    optimizer.build(model.trainable_variables)
    return model


def make_model(config, source_vocab_size, target_vocab_size):
    """The built, not compiled, `keras_rnn.Seq2Seq` of a `Config` (what
    `build_model` compiles; `keras-rnn average` loads checkpoints into it)."""
    e, t = config.evaluation, config.training
    model = keras_rnn.Seq2Seq(
        source_vocab_size, target_vocab_size, **dataclasses.asdict(config.model),
        seed=t.seed,
        decoding=dict(
            beam_size=e.beam_size, length_penalty_alpha=e.length_penalty_alpha,
            max_length_ratio=e.max_length_ratio, max_length_offset=e.max_length_offset,
            max_length=max(config.data.max_length * 2, 16),
        ),
    )
    model.build()
    return model
