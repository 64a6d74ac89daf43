"""SentencePiece subword tokenizer, in Python and inside a TensorFlow graph.

One `Tokenizer` wraps one trained SentencePiece model (Kudo & Richardson
2018, "SentencePiece: A simple and language independent subword tokenizer
and detokenizer for Neural Text Processing"; the unigram language model of
Kudo 2018 by default). The same model bytes drive two implementations:

- Python (`encode` / `decode`), through the `sentencepiece` package, for
  training data and evaluation;
- TensorFlow (`tf_encode` / `tf_decode`), through TF Text's SentencePiece
  ops, so an exported SavedModel maps raw text to raw text with no Python.

The special tokens live in one place, `SPECIALS`: every tokenizer has
`pad = 0`, `bos = 1`, `eos = 2`, `unk = 3` (the ids `keras_rnn.Seq2Seq`
expects by default). `encode` and `tf_encode` add neither BOS nor EOS:
`add_eos` ends every source and target with EOS (the one place that rule
lives, for Python lists and in the graph alike), and the pipeline puts BOS
in front of the decoder inputs (`ParallelData.batch`).
"""

import importlib.machinery
import importlib.util
import io
import os
import sys
import threading
import types
from pathlib import Path

import numpy as np

SPECIALS = {"pad": 0, "bos": 1, "eos": 2, "unk": 3}
PAD_ID, BOS_ID, EOS_ID, UNK_ID = (SPECIALS[k] for k in ("pad", "bos", "eos", "unk"))


def train_tokenizer(paths, model_path, vocab_size=8000, model_type="unigram",
                    character_coverage=1.0, max_sentences=0, seed=0):
    """Trains a SentencePiece model on text files and writes `model_path`.

    Args:
        paths: text files, one sentence per line (the training split);
            names ending in ".gz" are read as gzip.
        model_path: where the `.model` file is written (atomically).
        vocab_size: number of pieces, the four specials included.
        model_type: "unigram" (default) or "bpe".
        character_coverage: fraction of characters covered by the model.
        max_sentences: train on this many sentences, sampled with `seed`,
            when the files hold more (0 = all).
        seed: the sampling seed (also SentencePiece's random seed).

    Returns:
        The `Tokenizer` of the trained model.
    """
    import sentencepiece as spm

    if vocab_size < len(SPECIALS) + 1:
        raise ValueError(f"vocab_size must be > {len(SPECIALS)}; got {vocab_size}.")
    paths = [str(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    for p in paths:
        if not os.path.exists(p):
            raise FileNotFoundError(f"{p}: no such file (tokenizer training text).")
    spm.set_random_generator_seed(seed)
    source = dict(input=paths)
    plain = not any(p.endswith(".gz") for p in paths)
    if max_sentences or not plain:
        # SentencePiece's own sampling (`input_sentence_size`) differs from
        # run to run whatever the seed; sample here, reproducibly, streaming
        # the files twice (count, then keep) rather than holding them.
        count = sum(1 for _ in _text_lines(paths))
        keep = None
        if max_sentences and count > max_sentences:
            keep = np.sort(np.random.default_rng(seed).choice(
                count, max_sentences, replace=False))
        if keep is not None or not plain:
            source = dict(sentence_iterator=_sampled(_text_lines(paths), keep))
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        **source, model_writer=buffer, vocab_size=vocab_size,
        model_type=model_type, character_coverage=character_coverage,
        pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,
        pad_piece="<pad>", bos_piece="<s>", eos_piece="</s>", unk_piece="<unk>",
        hard_vocab_limit=False,  # vocab_size is an upper bound (small corpora)
        num_threads=os.cpu_count() or 1, minloglevel=2,
    )
    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = model_path.with_name(model_path.name + ".tmp")
    temporary.write_bytes(buffer.getvalue())
    os.replace(temporary, model_path)
    return Tokenizer(model_path)


def _text_lines(paths):
    """The non-blank lines of text files (plain or gzip), streamed."""
    import gzip

    for p in paths:
        with (gzip.open(p, "rt", encoding="utf-8") if p.endswith(".gz")
              else open(p, encoding="utf-8")) as f:
            for line in f:
                line = line.rstrip("\r\n")
                if line.strip():
                    yield line


def _sampled(lines, keep):
    """The lines whose 0-based positions are in the sorted array `keep` (None: all)."""
    if keep is None:
        yield from lines
        return
    wanted = iter(keep.tolist())
    target = next(wanted, None)
    for i, line in enumerate(lines):
        if i == target:
            yield line
            target = next(wanted, None)
            if target is None:
                return


class Tokenizer:
    """A SentencePiece model with Python and in-graph encode/decode.

    Args:
        model: path of a `.model` file, or its bytes.

    Attributes:
        vocab_size, pad_id, bos_id, eos_id, unk_id, model_proto (bytes).
    """

    def __init__(self, model):
        import sentencepiece as spm

        if isinstance(model, (bytes, bytearray)):
            self.model_proto = bytes(model)
        else:
            path = Path(model)
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such SentencePiece model file.")
            self.model_proto = path.read_bytes()
        self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        for name, expected in SPECIALS.items():
            actual = getattr(self._sp, f"{name}_id")()
            if actual != expected:
                raise ValueError(
                    f"The SentencePiece model has {name}_id={actual}; keras-rnn "
                    f"needs {SPECIALS} (train it with train_tokenizer)."
                )
        self.vocab_size = self._sp.get_piece_size()
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (
            PAD_ID, BOS_ID, EOS_ID, UNK_ID
        )
        self._tf = None

    # ---------------------------------------------------------------- Python

    def encode(self, sentences, num_threads=None):
        """Sentences -> lists of ids (no BOS/EOS).

        Args:
            sentences: an iterable of str.
            num_threads: SentencePiece encoder threads (None: its default).

        Returns:
            One list of int ids per sentence.
        """
        if num_threads is None:
            return self._sp.encode(list(sentences), out_type=int)
        return self._sp.encode(list(sentences), out_type=int, num_threads=num_threads)

    def pieces(self, sentences):
        """Sentences -> lists of pieces (for attention plots)."""
        return self._sp.encode(list(sentences), out_type=str)

    def id_to_piece(self, ids):
        """Ids -> pieces (specials spelled `<pad>`, `<s>`, `</s>`, `<unk>`)."""
        return [self._sp.id_to_piece(int(i)) for i in ids]

    def decode(self, ids):
        """Lists (or a padded matrix) of ids -> sentences.

        Each row is cut at its first EOS; pad and BOS are dropped.
        """
        return [self._sp.decode(strip_ids(row)) for row in ids]

    # ------------------------------------------------------------ TensorFlow

    def _tf_tokenizer(self):
        if self._tf is None:
            import tensorflow as tf

            with tf.init_scope():  # the model resource lives outside any tf.function
                self._tf = sentencepiece_op_tokenizer(self.model_proto)
        return self._tf

    def tf_encode(self, sentences):
        """`tf.string` sentences `(batch,)` -> int32 `tf.RaggedTensor` ids.

        Uses only TF Text's `SentencepieceOp`/`SentencepieceTokenizeOp` and
        core ops; equals `encode` (tested on the Multi30k validation set).
        """
        import tensorflow as tf

        return tf.cast(self._tf_tokenizer().tokenize(sentences), tf.int32)

    def tf_decode(self, ids):
        """int ids `(batch, T)` (dense, padded) -> `tf.string` `(batch,)`.

        Rows are cut at the first EOS; pad and BOS are dropped, as `decode`.
        """
        import tensorflow as tf

        ids = tf.cast(ids, tf.int32)
        is_eos = tf.cast(tf.equal(ids, self.eos_id), tf.int32)
        before_eos = tf.equal(tf.cumsum(is_eos, axis=1), 0)
        keep = before_eos & tf.not_equal(ids, self.pad_id) & tf.not_equal(ids, self.bos_id)
        ragged = tf.ragged.boolean_mask(ids, keep)
        return self._tf_tokenizer().detokenize(ragged)


def add_eos(ids):
    """Ends every id sequence with EOS: what the model reads and predicts.

    Args:
        ids: a list of id lists (from `Tokenizer.encode`), or an int
            `tf.RaggedTensor` `(batch, None)` (from `Tokenizer.tf_encode`).

    Returns:
        The same kind, each row one id longer.
    """
    if isinstance(ids, (list, tuple)):
        return [list(row) + [EOS_ID] for row in ids]
    import tensorflow as tf

    eos = tf.fill([ids.nrows(), 1], tf.constant(EOS_ID, ids.dtype))  # (batch, 1)
    return tf.concat([ids, tf.RaggedTensor.from_tensor(eos)], axis=1)


def strip_ids(row):
    """One id sequence cut at its first EOS, without pad and BOS."""
    out = []
    for i in np.asarray(row).tolist():
        if i == EOS_ID:
            break
        if i not in (PAD_ID, BOS_ID):
            out.append(int(i))
    return out


def sentencepiece_op_tokenizer(model_proto):
    """TF Text's `SentencepieceTokenizer` for `model_proto`.

    tensorflow-text 2.21.0's wheel does not import as a whole on some
    machines (its ICU-linked `pybinds` library misses `icudt77_dat`); the
    SentencePiece ops do not need it, so on that ImportError this loads
    only `tensorflow_text/python/ops/sentencepiece_tokenizer.py` (and its
    op library) without running the package's `__init__`.
    """
    import hashlib

    try:
        import tensorflow_text

        # After the fallback below, `tensorflow_text` is its namespace stand-in.
        cls = (getattr(tensorflow_text, "SentencepieceTokenizer", None)
               or _load_sentencepiece_module().SentencepieceTokenizer)
    except ImportError:
        cls = _load_sentencepiece_module().SentencepieceTokenizer
    # TF Text's `SentencepieceOp` names its resource after the op's node,
    # and a loaded SavedModel re-creates every tokenizer's resource from a
    # node called "SentenceTokenizerInitializer/SentencepieceOp": a source
    # and a target tokenizer would then share one model. A name scope
    # unique to the model bytes keeps them apart.
    name = "sentencepiece_" + hashlib.sha256(model_proto).hexdigest()[:16]
    return cls(model=model_proto, out_type="int32", add_bos=False, add_eos=False,
               name=name)


def register_tf_text_ops():
    """Registers TF Text's SentencePiece ops with TensorFlow.

    Loading a SavedModel that uses them (`tf.saved_model.load` of a
    `keras-rnn export`) needs this first, as stock TensorFlow Serving links
    them in.
    """
    try:
        import tensorflow_text  # noqa: F401
    except ImportError:
        pass
    _load_sentencepiece_module()


_SENTENCEPIECE_LOCK = threading.Lock()


def _load_sentencepiece_module():
    # Servers load model versions on worker threads: without the lock a
    # second thread could find the first one's stand-in `tensorflow_text`
    # before its submodule is imported.
    with _SENTENCEPIECE_LOCK:
        name = "tensorflow_text.python.ops.sentencepiece_tokenizer"
        if name in sys.modules:
            return sys.modules[name]
        # The installed package, or the stand-in below (whose spec names
        # the same directory).
        spec = importlib.util.find_spec("tensorflow_text")
        if spec is None:
            raise ImportError("tensorflow-text is not installed (pip install tensorflow-text).")
        root = Path(next(iter(spec.submodule_search_locations)))
        # Namespace stand-ins for the parent packages, so that importing the
        # submodule does not execute tensorflow_text/__init__.py. Each has a
        # package spec, so `importlib.util.find_spec` still answers for it.
        for package in ("tensorflow_text", "tensorflow_text.python",
                        "tensorflow_text.python.ops"):
            if package not in sys.modules:
                location = str(root.joinpath(*package.split(".")[1:]))
                module = types.ModuleType(package)
                module.__spec__ = importlib.machinery.ModuleSpec(
                    package, None, is_package=True)
                module.__spec__.submodule_search_locations = [location]
                module.__path__ = [location]
                sys.modules[package] = module
        import tensorflow_text.python.ops.sentencepiece_tokenizer as module

        return module
