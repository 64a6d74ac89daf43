"""keras-rnn training: Multi30k translators (data, tokenizer, pipeline, CLI)."""
