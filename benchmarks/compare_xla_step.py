"""Does XLA change a training step's arithmetic? One run's checkpoint, two
copies of its model on TensorFlow, one compiled with XLA and one without,
stepped in lock step on the same batches.

    KERAS_BACKEND=tensorflow python benchmarks/compare_xla_step.py RUN STEP [--steps 160]

RUN is a `keras-rnn train` run folder with a checkpoint at STEP
(`RUN/checkpoints/step-0000STEP`). Dropout is set to 0 in both copies
(XLA and TensorFlow's graph kernels draw different random bits from the
same seed). Before every step the non-XLA copy takes every variable of the
XLA copy (weights, Adam's moments, the step counter), so differences do not
accumulate: each line compares one step's update, `|u_graph - u_xla| / |u_xla|`
over all weights, and names the variable with the largest relative
difference. Float32 rounding alone gives ~1e-6 overall.
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from keras_rnn.training.config import Config  # noqa: E402
from keras_rnn.training.model import build_model  # noqa: E402
from keras_rnn.training.train import TrainingRun  # noqa: E402


def every_variable(model):
    return list(model.variables) + list(model.optimizer.variables)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("step", type=int)
    parser.add_argument("--steps", type=int, default=160)
    args = parser.parse_args()
    settings = ["model.embedding_dropout=0", "model.output_dropout=0",
                f"output_dir={args.run / 'compare_xla_step'}"]
    graph_config = Config.load(args.run / "config.yaml", settings + ["training.jit_compile=false"])
    run = TrainingRun(graph_config)
    run.setup()
    graph = run.model
    xla_config = Config.load(args.run / "config.yaml", settings + ["training.jit_compile=true"])
    xla = build_model(xla_config, run.corpus.source_tokenizer.vocab_size,
                      run.corpus.target_tokenizer.vocab_size)
    checkpoint = args.run / "checkpoints" / f"step-{args.step:08d}"
    for model in (graph, xla):
        run.checkpoints.restore(model, checkpoint)
    worst_overall = 0.0
    batches = iter(run.dataset(args.step, args.step + args.steps))
    for k in range(args.steps):
        inputs, labels = next(batches)
        for mine, theirs in zip(every_variable(graph), every_variable(xla)):
            mine.assign(theirs.numpy())
        before = [v.numpy() for v in xla.trainable_variables]
        loss_graph = float(graph.train_on_batch(inputs, labels))
        loss_xla = float(xla.train_on_batch(inputs, labels))
        updates = [(g.numpy() - w, x.numpy() - w) for g, x, w in
                   zip(graph.trainable_variables, xla.trainable_variables, before)]
        overall = (np.sqrt(sum(np.sum((g - x) ** 2) for g, x in updates))
                   / np.sqrt(sum(np.sum(x ** 2) for _, x in updates)))
        worst, name = max((np.linalg.norm(g - x) / (np.linalg.norm(x) + 1e-20), v.path)
                          for (g, x), v in zip(updates, xla.trainable_variables))
        worst_overall = max(worst_overall, worst)
        print(f"step {args.step + k + 1} batch {tuple(inputs['target'].shape)} "
              f"loss {loss_graph:.5f} / {loss_xla:.5f} (graph / XLA) update difference "
              f"{overall:.2e}, largest {worst:.2e} in {name}", flush=True)
    print(f"{args.steps} steps: the largest relative difference of one variable's "
          f"update was {worst_overall:.2e}")


if __name__ == "__main__":
    main()
