"""TF Addons' `tfa.seq2seq` API over the keras_rnn core, re-exported by
`keras_rnn.seq2seq` (where a TF Addons user looks: `tfa.seq2seq.X` becomes
`keras_rnn.seq2seq.X`).

Thin adapters: the attention scores, the attention-wrapper step, the beam
search and the loss are the core's (`keras_rnn.attention`,
`keras_rnn.attention_wrapper`, `keras_rnn.decoding`, `keras_rnn.losses`);
these modules add TF Addons' names, argument orders and calling conventions.
`docs/MIGRATION.md` lists every name and each remaining difference.
"""
