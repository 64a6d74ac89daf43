"""TensorFlow Addons' "Neural machine translation with attention" tutorial
(`docs/tutorials/networks_seq2seq_nmt.ipynb`), ported to keras-rnn.

    python examples/tfa_nmt_attention.py                       # built-in pairs
    KERAS_BACKEND=jax python examples/tfa_nmt_attention.py --epochs 20
    python examples/tfa_nmt_attention.py --data ../shared/data/multi30k --num-examples 2000

The tutorial's structure and its `tfa.seq2seq` code are kept: an `Encoder`
(embedding + LSTM), a `Decoder` whose `LSTMCell` is wrapped in an
`AttentionWrapper` over a `LuongAttention` (or `BahdanauAttention`) set up
with `setup_memory`, a `BasicDecoder` with a `TrainingSampler` for teacher
forcing, greedy decoding with a `GreedyEmbeddingSampler`, and beam search
with `tile_batch` + `BeamSearchDecoder`. The one TF Addons line changed:

    import tensorflow_addons as tfa   ->   import keras_rnn as tfa

What Keras 3 forced (nothing else differs from the tutorial):
1. `tf.keras.preprocessing.text.Tokenizer` is gone from Keras 3: a minimal
   `Tokenizer` below keeps its `word_index` / `index_word` /
   `texts_to_sequences`; `pad_sequences` is `keras.utils.pad_sequences`.
2. Multi-backend (TensorFlow and JAX): `tf.*` tensor calls become
   `keras.ops` (`tf.zeros` -> `ops.zeros`, `tf.fill` -> `ops.full`, ...),
   `tf.data` becomes NumPy batches, and the `@tf.function` +
   `tf.GradientTape` train step becomes `Translator.train_on_batch` (a
   `keras.Model` whose `call` is the tutorial's forward pass), which Keras
   compiles on either backend.
3. The data: a small built-in English -> German list (or a Multi30k split
   with `--data`) instead of downloading `spa-eng.zip`.
4. Keras 3 cells' `get_initial_state` take no dtype (keras-rnn's
   `AttentionWrapper.get_initial_state` still accepts TF Addons' `dtype=`).
"""

import argparse
import io
import os
import re
import time
import unicodedata

import numpy as np

import keras
from keras import ops

import keras_rnn as tfa

BUILT_IN = [
    ("a man is walking .", "ein mann geht ."),
    ("a woman is walking .", "eine frau geht ."),
    ("a dog is running .", "ein hund rennt ."),
    ("a man is running .", "ein mann rennt ."),
    ("a woman is running .", "eine frau rennt ."),
    ("a dog is walking .", "ein hund geht ."),
    ("a man is sitting .", "ein mann sitzt ."),
    ("a woman is sitting .", "eine frau sitzt ."),
    ("a dog is sitting .", "ein hund sitzt ."),
    ("two men are walking .", "zwei manner gehen ."),
    ("two women are running .", "zwei frauen rennen ."),
    ("two dogs are sitting .", "zwei hunde sitzen ."),
]


class Tokenizer:
    """The part of `tf.keras.preprocessing.text.Tokenizer(filters='')` the
    tutorial uses (Keras 3 has none): ids by frequency, from 1."""

    def __init__(self, filters=""):
        self.word_index, self.index_word = {}, {}

    def fit_on_texts(self, texts):
        counts = {}
        for text in texts:
            for word in text.split(" "):
                if word:
                    counts[word] = counts.get(word, 0) + 1
        ordered = sorted(counts, key=lambda w: (-counts[w], w))
        self.word_index = {w: i + 1 for i, w in enumerate(ordered)}
        self.index_word = {i: w for w, i in self.word_index.items()}

    def texts_to_sequences(self, texts):
        return [[self.word_index[w] for w in t.split(" ") if w in self.word_index]
                for t in texts]


class NMTDataset:
    def __init__(self, problem_type="en-de", data_dir=None):
        self.problem_type = problem_type
        self.data_dir = data_dir
        self.inp_lang_tokenizer = None
        self.targ_lang_tokenizer = None

    def unicode_to_ascii(self, s):
        return "".join(c for c in unicodedata.normalize("NFD", s)
                       if unicodedata.category(c) != "Mn")

    ## Step 1 and Step 2
    def preprocess_sentence(self, w):
        w = self.unicode_to_ascii(w.lower().strip())

        # creating a space between a word and the punctuation following it
        # eg: "he is a boy." => "he is a boy ."
        w = re.sub(r"([?.!,¿])", r" \1 ", w)
        w = re.sub(r'[" "]+', " ", w)

        # replacing everything with space except (a-z, A-Z, ".", "?", "!", ",")
        w = re.sub(r"[^a-zA-Z?.!,¿]+", " ", w)

        w = w.strip()

        # adding a start and an end token to the sentence
        # so that the model know when to start and stop predicting.
        w = "<start> " + w + " <end>"
        return w

    def create_dataset(self, path, num_examples):
        # path : path to the data (or None: the built-in pairs)
        # num_examples : Limit the total number of training example for faster training (set num_examples = len(lines) to use full data)
        if path is None:
            pairs = BUILT_IN[:num_examples]
        else:
            with io.open(os.path.join(path, "val.en"), encoding="UTF-8") as f:
                source = f.read().strip().split("\n")
            with io.open(os.path.join(path, "val.de"), encoding="UTF-8") as f:
                target = f.read().strip().split("\n")
            pairs = list(zip(source, target))[:num_examples]
        word_pairs = [[self.preprocess_sentence(w) for w in pair] for pair in pairs]
        return zip(*word_pairs)

    # Step 3 and Step 4
    def tokenize(self, lang):
        # lang = list of sentences in a language
        lang_tokenizer = Tokenizer(filters="")
        lang_tokenizer.fit_on_texts(lang)

        ## tf.keras.preprocessing.text.Tokenizer.texts_to_sequences converts string (w1, w2, w3, ......, wn)
        ## to a list of correspoding integer ids of words (id_w1, id_w2, id_w3, ...., id_wn)
        tensor = lang_tokenizer.texts_to_sequences(lang)

        ## tf.keras.preprocessing.sequence.pad_sequences takes argument a list of integer id sequences
        ## and pads the sequences to match the longest sequences in the given input
        tensor = keras.utils.pad_sequences(tensor, padding="post")

        return tensor, lang_tokenizer

    def load_dataset(self, path, num_examples=None):
        # creating cleaned input, output pairs
        inp_lang, targ_lang = self.create_dataset(path, num_examples)

        input_tensor, inp_lang_tokenizer = self.tokenize(inp_lang)
        target_tensor, targ_lang_tokenizer = self.tokenize(targ_lang)

        return input_tensor, target_tensor, inp_lang_tokenizer, targ_lang_tokenizer

    def call(self, num_examples, BUFFER_SIZE, BATCH_SIZE):
        input_tensor, target_tensor, self.inp_lang_tokenizer, self.targ_lang_tokenizer = \
            self.load_dataset(self.data_dir, num_examples)

        n_train = max(BATCH_SIZE, int(0.8 * len(input_tensor)))
        input_tensor_train, target_tensor_train = input_tensor[:n_train], target_tensor[:n_train]
        input_tensor_val, target_tensor_val = input_tensor[n_train:], target_tensor[n_train:]

        def batches(x, y, seed):  # tf.data.Dataset.shuffle(...).batch(..., drop_remainder=True)
            order = np.random.default_rng(seed).permutation(len(x))
            for i in range(0, len(x) - BATCH_SIZE + 1, BATCH_SIZE):
                yield x[order[i:i + BATCH_SIZE]], y[order[i:i + BATCH_SIZE]]

        train_dataset = lambda epoch: batches(input_tensor_train, target_tensor_train, epoch)
        val_dataset = lambda epoch: batches(input_tensor_val, target_tensor_val, epoch)
        return train_dataset, val_dataset, self.inp_lang_tokenizer, self.targ_lang_tokenizer, \
            input_tensor_train, target_tensor_train


##### Encoder, Decoder: the tutorial's, verbatim but for `tf.keras` -> `keras`


class Encoder(keras.Model):
    def __init__(self, vocab_size, embedding_dim, enc_units, batch_sz):
        super(Encoder, self).__init__()
        self.batch_sz = batch_sz
        self.enc_units = enc_units
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim)

        ##-------- LSTM layer in Encoder ------- ##
        self.lstm_layer = keras.layers.LSTM(self.enc_units,
                                            return_sequences=True,
                                            return_state=True,
                                            recurrent_initializer="glorot_uniform")

    def call(self, x, hidden):
        x = self.embedding(x)
        output, h, c = self.lstm_layer(x, initial_state=hidden)
        return output, h, c

    def initialize_hidden_state(self):
        return [ops.zeros((self.batch_sz, self.enc_units)), ops.zeros((self.batch_sz, self.enc_units))]


class Decoder(keras.Model):
    def __init__(self, vocab_size, embedding_dim, dec_units, batch_sz, attention_type="luong"):
        super(Decoder, self).__init__()
        self.batch_sz = batch_sz
        self.dec_units = dec_units
        self.attention_type = attention_type

        # Embedding Layer
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim)

        # Final Dense layer on which softmax will be applied
        self.fc = keras.layers.Dense(vocab_size)

        # Define the fundamental cell for decoder recurrent structure
        self.decoder_rnn_cell = keras.layers.LSTMCell(self.dec_units)

        # Sampler
        self.sampler = tfa.seq2seq.sampler.TrainingSampler()

        # Create attention mechanism with memory = None
        self.attention_mechanism = self.build_attention_mechanism(
            self.dec_units, None, self.batch_sz * [max_length_input], self.attention_type)

        # Wrap attention mechanism with the fundamental rnn cell of decoder
        self.rnn_cell = self.build_rnn_cell(batch_sz)

        # Define the decoder with respect to fundamental rnn cell
        self.decoder = tfa.seq2seq.BasicDecoder(self.rnn_cell, sampler=self.sampler, output_layer=self.fc)

    def build_rnn_cell(self, batch_sz):
        rnn_cell = tfa.seq2seq.AttentionWrapper(self.decoder_rnn_cell,
                                                self.attention_mechanism, attention_layer_size=self.dec_units)
        return rnn_cell

    def build_attention_mechanism(self, dec_units, memory, memory_sequence_length, attention_type="luong"):
        # ------------- #
        # typ: Which sort of attention (Bahdanau, Luong)
        # dec_units: final dimension of attention outputs
        # memory: encoder hidden states of shape (batch_size, max_length_input, enc_units)
        # memory_sequence_length: 1d array of shape (batch_size) with every element set to max_length_input (for masking purpose)

        if attention_type == "bahdanau":
            return tfa.seq2seq.BahdanauAttention(units=dec_units, memory=memory, memory_sequence_length=memory_sequence_length)
        else:
            return tfa.seq2seq.LuongAttention(units=dec_units, memory=memory, memory_sequence_length=memory_sequence_length)

    def build_initial_state(self, batch_sz, encoder_state, Dtype):
        decoder_initial_state = self.rnn_cell.get_initial_state(batch_size=batch_sz, dtype=Dtype)
        decoder_initial_state = decoder_initial_state.clone(cell_state=encoder_state)
        return decoder_initial_state

    def call(self, inputs, initial_state):
        x = self.embedding(inputs)
        outputs, _, _ = self.decoder(x, initial_state=initial_state, sequence_length=self.batch_sz * [max_length_output - 1])
        return outputs


def loss_function(real, pred):
    # real shape = (BATCH_SIZE, max_length_output)
    # pred shape = (BATCH_SIZE, max_length_output, tar_vocab_size )
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
    loss = cross_entropy(y_true=real, y_pred=pred)
    mask = ops.logical_not(ops.equal(real, 0))  # output 0 for y=0 else output 1
    mask = ops.cast(mask, dtype=loss.dtype)
    loss = mask * loss
    loss = ops.mean(loss)
    return loss


class Translator(keras.Model):
    """Keras 3: the tutorial's `train_step` forward pass as a model `call`,
    so `train_on_batch` differentiates and compiles it on any backend (the
    tutorial used `tf.GradientTape` inside `@tf.function`)."""

    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def call(self, data):
        inp, dec_input, enc_h0, enc_c0 = data
        enc_output, enc_h, enc_c = self.encoder(inp, [enc_h0, enc_c0])

        # Set the AttentionMechanism object with encoder_outputs
        self.decoder.attention_mechanism.setup_memory(enc_output)

        # Create AttentionWrapperState as initial_state for decoder
        decoder_initial_state = self.decoder.build_initial_state(BATCH_SIZE, [enc_h, enc_c], "float32")
        pred = self.decoder(dec_input, decoder_initial_state)
        return pred.rnn_output


def train_step(inp, targ, enc_hidden):
    dec_input = targ[:, :-1]  # Ignore <end> token
    real = targ[:, 1:]        # ignore <start> token
    return translator.train_on_batch((inp, dec_input, *enc_hidden), real)


def evaluate_sentence(sentence):
    sentence = dataset_creator.preprocess_sentence(sentence)

    inputs = [inp_lang.word_index[i] for i in sentence.split(" ")]
    inputs = keras.utils.pad_sequences([inputs], maxlen=max_length_input, padding="post")
    inputs = ops.convert_to_tensor(inputs)
    inference_batch_size = inputs.shape[0]

    enc_start_state = [ops.zeros((inference_batch_size, units)), ops.zeros((inference_batch_size, units))]
    enc_out, enc_h, enc_c = encoder(inputs, enc_start_state)

    start_tokens = ops.full([inference_batch_size], targ_lang.word_index["<start>"], "int32")
    end_token = targ_lang.word_index["<end>"]

    greedy_sampler = tfa.seq2seq.GreedyEmbeddingSampler()

    # Instantiate BasicDecoder object
    decoder_instance = tfa.seq2seq.BasicDecoder(cell=decoder.rnn_cell, sampler=greedy_sampler,
                                                output_layer=decoder.fc, maximum_iterations=max_length_output)
    # Setup Memory in decoder stack
    decoder.attention_mechanism.setup_memory(enc_out)

    # set decoder_initial_state
    decoder_initial_state = decoder.build_initial_state(inference_batch_size, [enc_h, enc_c], "float32")

    ### Since the BasicDecoder wraps around Decoder's rnn cell only, you have to ensure that the inputs to BasicDecoder
    ### decoding step is output of embedding layer. tfa.seq2seq.GreedyEmbeddingSampler() takes care of this.
    ### You only need to get the weights of embedding layer, which can be done by decoder.embedding.variables[0] and pass this callabble to BasicDecoder's call() function

    decoder_embedding_matrix = decoder.embedding.variables[0]

    outputs, _, _ = decoder_instance(decoder_embedding_matrix, start_tokens=start_tokens,
                                     end_token=end_token, initial_state=decoder_initial_state)
    return ops.convert_to_numpy(outputs.sample_id)


def translate(sentence):
    result = evaluate_sentence(sentence)
    result = targ_lang.sequences_to_texts(result) if hasattr(targ_lang, "sequences_to_texts") else [
        " ".join(targ_lang.index_word.get(int(i), "") for i in row) for row in result]
    print("Input: %s" % (sentence))
    print("Predicted translation: {}".format(result))
    return result


def beam_evaluate_sentence(sentence, beam_width=3):
    sentence = dataset_creator.preprocess_sentence(sentence)

    inputs = [inp_lang.word_index[i] for i in sentence.split(" ")]
    inputs = keras.utils.pad_sequences([inputs], maxlen=max_length_input, padding="post")
    inputs = ops.convert_to_tensor(inputs)
    inference_batch_size = inputs.shape[0]

    enc_start_state = [ops.zeros((inference_batch_size, units)), ops.zeros((inference_batch_size, units))]
    enc_out, enc_h, enc_c = encoder(inputs, enc_start_state)

    start_tokens = ops.full([inference_batch_size], targ_lang.word_index["<start>"], "int32")
    end_token = targ_lang.word_index["<end>"]

    # From official documentation
    # NOTE If you are using the BeamSearchDecoder with a cell wrapped in AttentionWrapper, then you must ensure that:
    # The encoder output has been tiled to beam_width via tfa.seq2seq.tile_batch (NOT tf.tile).
    # The batch_size argument passed to the get_initial_state method of this wrapper is equal to true_batch_size * beam_width.
    # The initial state created with get_initial_state above contains a cell_state value containing properly tiled final state from the encoder.

    enc_out = tfa.seq2seq.tile_batch(enc_out, multiplier=beam_width)
    decoder.attention_mechanism.setup_memory(enc_out)
    print("beam_with * [batch_size, max_length_input, rnn_units] :", enc_out.shape)

    # set decoder_inital_state which is an AttentionWrapperState considering beam_width
    hidden_state = tfa.seq2seq.tile_batch([enc_h, enc_c], multiplier=beam_width)
    decoder_initial_state = decoder.rnn_cell.get_initial_state(batch_size=beam_width * inference_batch_size, dtype="float32")
    decoder_initial_state = decoder_initial_state.clone(cell_state=hidden_state)

    # Instantiate BeamSearchDecoder
    decoder_instance = tfa.seq2seq.BeamSearchDecoder(decoder.rnn_cell, beam_width=beam_width, output_layer=decoder.fc,
                                                     maximum_iterations=max_length_output)
    decoder_embedding_matrix = decoder.embedding.variables[0]

    # The BeamSearchDecoder object's call() function takes care of everything.
    outputs, final_state, sequence_lengths = decoder_instance(decoder_embedding_matrix, start_tokens=start_tokens,
                                                              end_token=end_token, initial_state=decoder_initial_state)
    # outputs is tfa.seq2seq.FinalBeamSearchDecoderOutput object.
    # The final beam predictions are stored in outputs.predicted_id
    # outputs.beam_search_decoder_output is a tfa.seq2seq.BeamSearchDecoderOutput object which keep tracks of beam_scores and parent_ids while performing a beam decoding step
    # final_state = tfa.seq2seq.BeamSearchDecoderState object.
    # Shape of outputs.predicted_ids = (inference_batch_size, time_step_outputs, beam_width)
    # Shape of outputs.beam_search_decoder_output.scores = (inference_batch_size, time_step_outputs, beam_width)
    # Convert the shape of outputs and beam_scores to (inference_batch_size, beam_width, time_step_outputs)
    final_outputs = ops.transpose(outputs.predicted_ids, axes=(0, 2, 1))
    beam_scores = ops.transpose(outputs.beam_search_decoder_output.scores, axes=(0, 2, 1))

    return ops.convert_to_numpy(final_outputs), ops.convert_to_numpy(beam_scores)


def beam_translate(sentence):
    result, beam_scores = beam_evaluate_sentence(sentence)
    print(result.shape, beam_scores.shape)
    translations = []
    for beam, score in zip(result, beam_scores):
        print(beam.shape, score.shape)
        output = [" ".join(targ_lang.index_word.get(int(i), "") for i in row) for row in beam]
        beam_score = [a.sum() for a in score]
        print("Input: %s" % (sentence))
        for i in range(len(output)):
            print("{} Predicted translation: {}  {}".format(i + 1, output[i], beam_score[i]))
        translations.append(output)
    return translations


def main(argv=None):
    global BATCH_SIZE, units, max_length_input, max_length_output, dataset_creator
    global inp_lang, targ_lang, encoder, decoder, translator
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="Multi30k directory (default: built-in pairs)")
    parser.add_argument("--num-examples", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--embedding-dim", type=int, default=16)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--attention", default="luong", choices=["luong", "bahdanau"])
    args = parser.parse_args(argv)

    BUFFER_SIZE = 32000
    BATCH_SIZE = args.batch_size
    dataset_creator = NMTDataset("en-de", args.data)
    train_dataset, val_dataset, inp_lang, targ_lang, example_input_batch, example_target_batch = \
        dataset_creator.call(args.num_examples, BUFFER_SIZE, BATCH_SIZE)

    vocab_inp_size = len(inp_lang.word_index) + 1
    vocab_tar_size = len(targ_lang.word_index) + 1
    max_length_input = example_input_batch.shape[1]
    max_length_output = example_target_batch.shape[1]

    embedding_dim = args.embedding_dim
    units = args.units

    encoder = Encoder(vocab_inp_size, embedding_dim, units, BATCH_SIZE)
    decoder = Decoder(vocab_tar_size, embedding_dim, units, BATCH_SIZE, args.attention)
    optimizer = keras.optimizers.Adam()
    translator = Translator(encoder, decoder)
    translator.compile(optimizer=optimizer, loss=loss_function)

    EPOCHS = args.epochs
    losses = []
    for epoch in range(EPOCHS):
        start = time.time()

        enc_hidden = encoder.initialize_hidden_state()
        total_loss = 0
        steps = 0
        for (batch, (inp, targ)) in enumerate(train_dataset(epoch)):
            batch_loss = train_step(inp, targ, enc_hidden)
            total_loss += batch_loss
            steps += 1

        losses.append(total_loss / steps)
        print("Epoch {} Loss {:.4f}".format(epoch + 1, losses[-1]))
        print("Time taken for 1 epoch {} sec\n".format(time.time() - start))

    sentence = "a man is walking ." if args.data is None else "a man is sleeping ."
    greedy = translate(sentence)
    beams = beam_translate(sentence)
    return {"losses": losses, "greedy": greedy, "beams": beams}


if __name__ == "__main__":
    main()
