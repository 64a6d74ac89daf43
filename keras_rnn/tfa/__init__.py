"""The TensorFlow Addons annex: TF Addons' `tfa.rnn` and `tfa.seq2seq` APIs
over the keras_rnn core, for code migrating from TF Addons.

    keras_rnn/tfa/rnn.py        LayerNormLSTMCell, LayerNormSimpleRNNCell,
                                PeepholeLSTMCell
    keras_rnn/tfa/seq2seq/      attention_wrapper, beam_search_decoder,
                                decoder, loss, sampler

Users do not import this package: `keras_rnn.rnn` and `keras_rnn.seq2seq`
re-export its names where a TF Addons user looks for them, so
`import keras_rnn as tfa` keeps `tfa.rnn.X` and `tfa.seq2seq.X` working.
The annex depends on the core (it imports core modules by module, e.g.
`from keras_rnn import attention`); no core module imports the annex.
`docs/MIGRATION.md` lists every name and each remaining difference.
"""
