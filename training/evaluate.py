"""`keras-rnn evaluate RUN`: beam search over a test split, sacreBLEU.

BLEU (Papineni et al. 2002) is computed by sacreBLEU (Post 2018, "A Call
for Clarity in Reporting BLEU Scores") on detokenized text with its
default 13a tokenization, cased -- the number to compare across papers,
printed with its signature -- and lowercased, the way the published
Multi30k attention-RNN figures were computed.
"""

import json
import time
from pathlib import Path

import keras
import numpy as np

from keras_rnn.training import data as data_lib
from keras_rnn.training.config import Config
from keras_rnn.training.pipeline import pad_rows
from keras_rnn.training.tokenizer import Tokenizer, add_eos


class Translator:
    """A trained run's best model with its two tokenizers.

    Args:
        run_dir: a run directory (`output_dir` of a config), whose `model/`
            holds `model.keras`, `source.model`, `target.model`, `config.yaml`;
            or such a model directory itself (`keras-rnn average`'s output).
    """

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        model_dir = model_directory(self.run_dir)
        if not (model_dir / "model.keras").exists():
            raise FileNotFoundError(
                f"{model_dir / 'model.keras'}: no trained model (the run saves its best "
                "model there after its first epoch)."
            )
        import keras_rnn  # noqa: F401  (registers the serializable classes)

        self.config = Config.load(model_dir / "config.yaml")
        self.model = keras.saving.load_model(model_dir / "model.keras", compile=False)
        self.source_tokenizer = Tokenizer(model_dir / "source.model")
        self.target_tokenizer = Tokenizer(model_dir / "target.model")

    def translate(self, sentences, method="beam", batch_size=None, **settings):
        """Sentences -> `(translations, DecodeResult)`."""
        if not sentences:
            raise ValueError("No sentences to translate.")
        return translate_ids(self.model, self.target_tokenizer,
                             add_eos(self.source_tokenizer.encode(sentences)), method=method,
                             batch_size=batch_size or self.config.evaluation.batch_size,
                             **settings)


def model_directory(path):
    """The model directory of `path`: `path` itself when it holds
    `model.keras` (a `keras-rnn average` output), else the run's `model/`."""
    path = Path(path)
    return path if (path / "model.keras").exists() else path / "model"


def translate_ids(model, target_tokenizer, sources, method="beam", batch_size=64, **settings):
    """Decodes source id rows (EOS included) and detokenizes the best hypotheses.

    Returns:
        `(translations, DecodeResult)`: one sentence per source row.
    """
    result = model.decode(pad_rows(sources), method=method, batch_size=batch_size, **settings)
    return target_tokenizer.decode(np.asarray(result.ids)[:, 0]), result


def bleu_scores(hypotheses, references):
    """Cased and lowercased sacreBLEU (13a) with their signatures."""
    import sacrebleu

    cased = sacrebleu.metrics.BLEU()
    lower = sacrebleu.metrics.BLEU(lowercase=True)
    cased_score = cased.corpus_score(hypotheses, [references])
    lower_score = lower.corpus_score(hypotheses, [references])
    return {
        "bleu": round(cased_score.score, 2),
        "signature": str(cased.get_signature()),
        "bleu_lowercased": round(lower_score.score, 2),
        "signature_lowercased": str(lower.get_signature()),
        "detail": str(cased_score),
    }


def evaluate(run_dir, split=None, output=None, beam_size=None,
             length_penalty_alpha=None, batch_size=None, limit=None):
    """Translates `split` with beam search, scores it, writes the outputs.

    Args:
        run_dir: the run directory, or a model directory (`Translator`);
            the translations and scores are written there.
        split: the split name (default: the config's `test_split`).
        output: translations file (default `<run>/translations.<split>.<lang>`).
        beam_size, length_penalty_alpha, batch_size: override the config.
        limit: only the first `limit` sentences.

    Returns:
        dict: BLEU scores, signatures, sentence count, seconds and paths.
    """
    translator = Translator(run_dir)
    d = translator.config.data
    split = split or d.test_split
    sources, references = data_lib.read_parallel(
        *data_lib.corpus_paths(d.dir, split, d.source_lang, d.target_lang))
    if limit:
        sources, references = sources[:limit], references[:limit]
    start = time.perf_counter()
    hypotheses, _ = translator.translate(
        sources, method="beam", batch_size=batch_size, beam_size=beam_size,
        length_penalty_alpha=length_penalty_alpha,
    )
    seconds = time.perf_counter() - start
    output = Path(output or Path(run_dir) / f"translations.{split}.{d.target_lang}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(hypotheses) + "\n", encoding="utf-8")
    scores = bleu_scores(hypotheses, references)
    settings = translator.model.decoding_settings(
        beam_size=beam_size, length_penalty_alpha=length_penalty_alpha)
    scores.update(
        split=split, sentences=len(sources), seconds=round(seconds, 2),
        translations=str(output), backend=keras.backend.backend(),
        beam_size=settings.beam_size,
        length_penalty_alpha=settings.length_penalty_alpha,
        parameters=translator.model.count_params(),
    )
    (Path(run_dir) / f"bleu.{split}.json").write_text(json.dumps(scores, indent=1))
    return scores


def attention_plots(run_dir, sentences, directory=None):
    """Alignment heat maps (PNG) of the beam-search translations.

    Returns:
        The list of written paths.
    """
    from keras_rnn.training.plots import plot_attention

    translator = Translator(run_dir)
    directory = Path(directory or Path(run_dir) / "plots")
    translations, result = translator.translate(sentences, method="beam")
    ids = np.asarray(result.ids)[:, 0]
    weights = np.asarray(result.alignments)[:, 0]
    paths = []
    for i, sentence in enumerate(sentences):
        source = translator.source_tokenizer.pieces([sentence])[0] + ["</s>"]
        length = int(np.asarray(result.lengths)[i, 0])
        target = translator.target_tokenizer.id_to_piece(ids[i, :length])
        path = directory / f"attention_{i}.png"
        plot_attention(source, target, weights[i], path, title=translations[i])
        paths.append(path)
    return paths
