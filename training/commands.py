"""The training commands of `keras-rnn` (flags in `keras_rnn.cli`).

`train`, `evaluate`, `average`, `translate RUN`, `plot` and `download` need the core
install and the training extra only: no gRPC, no protobuf, and with the
Python data pipeline no TensorFlow.
"""

import sys
from pathlib import Path

import numpy as np


def train(args):
    """`keras-rnn train`: Ctrl-C checkpoints the step it stops at and exits
    with one line (status 130), no traceback; the same command resumes."""
    from keras_rnn.training.config import DEFAULT_DATA_DIR, Config, resolve_config
    from keras_rnn.training.controller import Interrupted
    from keras_rnn.training.multiprocess import MultiProcessError, abandon, initialize
    from keras_rnn.training.train import TrainingRun

    try:
        path, overrides = resolve_config(args.config, data_dir=args.data_dir)
        config = Config.load(path, overrides=[*overrides, *args.set])
        if not Path(config.data.dir).is_dir():
            raise FileNotFoundError(
                f"{config.data.dir}: no such corpus directory; give --data-dir DIR or set "
                f"KERAS_RNN_DATA_DIR, or fetch Multi30k with `keras-rnn download "
                f"{DEFAULT_DATA_DIR}`.")
        try:
            processes = initialize(getattr(args, "coordinator_address", None),
                                   getattr(args, "num_processes", None),
                                   getattr(args, "process_id", None))
        except MultiProcessError as error:
            print(f"keras-rnn train: {error}", file=sys.stderr)
            return 2
        try:
            TrainingRun(config).train()
        except (Interrupted, KeyboardInterrupt):
            raise
        except Exception as error:
            if processes > 1:
                abandon(error, processes)
            raise
    except Interrupted as stop:
        print(f"keras-rnn train: {stop}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("keras-rnn train: interrupted; the last complete checkpoint is kept "
              "(run the same command to resume).", file=sys.stderr)
        return 130
    return 0


def evaluate(args):
    """`keras-rnn evaluate`."""
    from keras_rnn.training.evaluate import evaluate

    scores = evaluate(args.run, split=args.split, output=args.output,
                      beam_size=args.beam_size, length_penalty_alpha=args.alpha,
                      batch_size=args.batch_size, limit=args.limit)
    print(f"{scores['split']}: {scores['sentences']} sentences, beam {scores['beam_size']}, "
          f"{scores['seconds']} s ({scores['backend']})")
    print(f"BLEU (cased)      = {scores['bleu']:.2f}  {scores['signature']}")
    print(f"BLEU (lowercased) = {scores['bleu_lowercased']:.2f}  {scores['signature_lowercased']}")
    print(f"translations: {scores['translations']}")
    return 0


def average(args):
    """`keras-rnn average`."""
    from keras_rnn.training.average import average as average_run

    record = average_run(args.run, last=args.last, output=args.output)
    steps = ", ".join(map(str, record["steps"]))
    print(f"averaged the last {record['last']} checkpoint(s), steps {steps}, "
          f"into {record['output']}")
    return 0


def translate(args):
    """`keras-rnn translate`."""
    if not args.sentences:
        raise ValueError("give a run directory (or --server HOST:PORT) and sentences.")
    from keras_rnn.training.evaluate import Translator

    run, sentences = args.sentences[0], args.sentences[1:]
    translator = Translator(run)
    settings = dict(beam_size=args.beam_size, n_best=args.n_best, max_length=args.max_length)
    if args.method == "greedy":
        settings = dict(max_length=args.max_length)

    def translate(batch):
        translations, result = translator.translate(batch, method=args.method, **settings)
        if args.n_best <= 1 or args.method == "greedy":
            for text in translations:
                print(text, flush=True)
            return
        hypotheses = [translator.target_tokenizer.decode(np.asarray(result.ids)[:, k])
                      for k in range(args.n_best)]
        for i in range(len(batch)):
            for k in range(args.n_best):
                print(f"{k + 1}\t{float(result.scores[i, k]):.4f}\t{hypotheses[k][i]}")
            print(flush=True)

    if sentences:
        translate(sentences)
    else:
        for line in iter(sys.stdin.readline, ""):
            if line.strip():
                translate([line.rstrip("\r\n")])
    return 0


def plot(args):
    """`keras-rnn plot`."""
    from keras_rnn.training import data as data_lib
    from keras_rnn.training.evaluate import Translator, attention_plots
    from keras_rnn.training.plots import plot_history, read_history

    run = Path(args.run)
    written = [plot_history(read_history(run / "history.jsonl"), run / "plots" / "history.png",
                            title=run.name)]
    sentences = list(args.sentence)
    if args.index:
        d = Translator(run).config.data
        source = data_lib.read_lines(Path(d.dir) / f"{d.test_split}.{d.source_lang}")
        sentences = [source[i] for i in args.index] + sentences
    if sentences:
        written += attention_plots(run, sentences)
    for path in written:
        print(path)
    return 0


def download(args):
    """`keras-rnn download`."""
    from keras_rnn.training.data import download_multi30k

    for path in download_multi30k(args.dest, splits=args.splits, langs=args.langs):
        print(path)
    return 0
