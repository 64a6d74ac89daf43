"""One-shot GPU training benchmark: our De->En run against plain PyTorch.

    OUT=/tmp/out KERAS_BACKEND=jax python benchmarks/bench_gpu_training.py \
        --data-dir .gpu/data/multi30k --max-seconds 270 --deadline 530

Made for one call on a rented GPU machine without TensorFlow
(`benchmarks/gpu_run.sh` installs Keras and runs this). Two parts, each in
its own process (JAX keeps the GPU memory it took until its process ends):

1. **keras-rnn** (`--part keras`): `training.train.TrainingRun(config).train()`
   on the config (default `training/configs/multi30k_de_en.yaml`) with the
   Python data pipeline, a fresh run directory under /tmp. A subclass of the
   run's `Controller` (swapped in for this process only) records, per epoch:
   real target tokens (EOS included, padding excluded) of the batches trained
   and the training seconds (first batch begun to last batch done, the loss of
   the last batch fetched so JAX's asynchronous dispatch has caught up;
   validation excluded), hence tokens/s; the wall clock from the start of
   the process to the end of the epoch (validation and checkpoints
   included); validation loss and greedy BLEU (the run's own). Once an
   epoch ends past `--max-seconds` the run is marked finished (cleanly: the
   best model and the checkpoint are written as at any epoch end). Then
   `training.evaluate.evaluate` scores the best model on test_2016_flickr
   with beam search (cased and lowercased sacreBLEU), as `keras-rnn evaluate`;
   with `--average-last K` also the mean of the last K checkpoints (as
   `keras-rnn average RUN --last K`, the shipped configs' measured recipe).

   Compile seconds, two estimates: (a) per bucket shape, the host time of
   the first step of that shape minus the median host time of that shape's
   later steps, summed (XLA compiles synchronously when a new shape is
   dispatched, so the first step of a shape carries its compilation);
   (b) the first epoch's training seconds minus the steady epoch time (its
   tokens at the median tokens/s of the later epochs).
2. **PyTorch reference** (`benchmarks/torch_reference.py`): the same
   architecture in eager PyTorch on the same batches, timed for
   `--torch-seconds` after a warm-up.

All numbers go to `$OUT/gpu_bench.json` (OUT defaults to ./gpu_out), the
output of both parts to `$OUT/gpu_bench.log`; a summary is printed last.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = time.perf_counter()


def out_dir():
    path = Path(os.environ.get("OUT") or "gpu_out")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path, value):
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=1))
    os.replace(temporary, path)


# ------------------------------------------------------------ keras part


def keras_part(args):
    import numpy as np

    from keras_rnn.training import train as train_lib
    from keras_rnn.training.config import Config

    result_path = Path(args.result)
    run_dir = Path(args.run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, never a resume
    config = Config.load(args.config, overrides=[
        f"data.dir={Path(args.data_dir).resolve()}", f"output_dir={run_dir}",
        "training.data_pipeline=python", *args.set,
    ])
    result = dict(part="keras", config=args.config, overrides=args.set,
                  max_seconds=args.max_seconds, epochs=[], finished=False)

    def save():
        result["wall_seconds"] = round(time.perf_counter() - START, 2)
        write_json(result_path, result)

    class BenchController(train_lib.Controller):
        """The run's controller, plus per-step and per-epoch measurements."""

        def __init__(self, run):
            super().__init__(run)
            self.steps = []  # (bucket length, host seconds) of every step
            self._epoch_start = None
            self._epoch_tokens = 0

        def on_train_batch_begin(self, batch, logs=None):
            now = time.perf_counter()
            if self._epoch_start is None:
                self._epoch_start, self._epoch_tokens = now, 0
            self._step_start = now
            super().on_train_batch_begin(batch, logs)

        def on_train_batch_end(self, batch, logs=None):
            step = self.state["step"]
            if batch == self.params["steps"] - 1 and logs and "loss" in logs:
                float(logs["loss"])  # waits for the last step of the epoch
            now = time.perf_counter()
            self.steps.append((int(self.run.plan.batch_at(step)[0]), now - self._step_start))
            self._epoch_tokens += self.run.plan_tokens(step)
            self._train_end = now
            super().on_train_batch_end(batch, logs)

        def on_epoch_end(self, epoch, logs=None):
            seconds = self._train_end - self._epoch_start
            tokens = self._epoch_tokens
            super().on_epoch_end(epoch, logs)
            logs = logs or {}
            wall = time.perf_counter() - START
            result["epochs"].append(dict(
                epoch=epoch + 1, step=self.state["step"], tokens=tokens,
                train_seconds=round(seconds, 3), tokens_per_second=round(tokens / seconds, 1),
                wall_seconds_at_end=round(wall, 2), loss=float(logs.get("loss", "nan")),
                val_loss=float(logs.get("val_loss", "nan")),
                val_bleu=float(logs.get("val_bleu", "nan")),
            ))
            result["compile_seconds_first_step_per_shape"] = round(self.compile_seconds(), 2)
            self._epoch_start = None
            if wall >= args.max_seconds and not self.state["finished"]:
                train_lib.log(f"Benchmark budget: {wall:.0f} s >= --max-seconds "
                              f"{args.max_seconds}; stopping after epoch {epoch + 1}.")
                self.state["finished"] = True
                result["stopped_by_budget"] = True
            save()

        def compile_seconds(self):
            first, later = {}, {}
            for length, seconds in self.steps:
                if length in first:
                    later.setdefault(length, []).append(seconds)
                else:
                    first[length] = seconds
            return sum(max(0.0, first[n] - statistics.median(later.get(n, [first[n]])))
                       for n in first)

    train_lib.Controller = BenchController  # this process only
    run = train_lib.TrainingRun(config)
    run.setup()
    import keras

    result.update(
        backend=keras.backend.backend(), keras_version=keras.__version__,
        pipeline=run._pipeline_kind(), parameters=run.model.count_params(),
        steps_per_epoch=run.steps_per_epoch, training_pairs=len(run.corpus.train),
        bucket_shapes=len(np.unique(run.plan.padded)),
        setup_seconds=round(time.perf_counter() - START, 2),
    )
    try:
        import jax

        result["devices"] = [str(d) for d in jax.devices()]
        result["jax_version"] = jax.__version__
    except Exception as error:  # noqa: BLE001 (only informative)
        result["devices"] = repr(error)
    save()
    state = run.train()
    result.update(finished=True, final_step=state["step"], best_step=state["best_step"],
                  best_val_loss=state["best_val_loss"])
    epochs = result["epochs"]
    rates = [e["tokens_per_second"] for e in epochs]
    if rates:
        result["tokens_per_second"] = dict(first=rates[0], median=statistics.median(rates),
                                           last=rates[-1])
        if len(epochs) > 1:
            steady = statistics.median(rates[1:])
            result["compile_seconds_first_epoch_excess"] = round(
                epochs[0]["train_seconds"] - epochs[0]["tokens"] / steady, 2)
    history = [json.loads(line) for line in (run_dir / "history.jsonl").open()]
    windows = [r["tokens_per_second"] for r in history if r["kind"] == "train"]
    result["history_window_tokens_per_second"] = [round(w, 1) for w in windows]
    result["train_end_wall_seconds"] = round(time.perf_counter() - START, 2)
    save()

    if args.test_split:
        from keras_rnn.training.average import average
        from keras_rnn.training.evaluate import evaluate

        models = [("test", run_dir)]
        if args.average_last:  # the shipped configs' recipe (benchmarks/README.md)
            begin = time.perf_counter()
            record = average(run_dir, last=args.average_last,
                             output=run_dir / f"averaged-{args.average_last}")
            result["averaged"] = dict(steps=record["steps"],
                                      seconds=round(time.perf_counter() - begin, 2))
            models.append(("test_averaged", Path(record["output"])))
        for key, model_dir in models:
            begin = time.perf_counter()
            scores = evaluate(model_dir, split=args.test_split, limit=args.test_limit)
            scores["seconds_with_load_and_compile"] = round(time.perf_counter() - begin, 2)
            result[key] = scores
            train_lib.log(f"{args.test_split} ({model_dir.name}): BLEU {scores['bleu']} cased, "
                          f"{scores['bleu_lowercased']} lowercased (beam {scores['beam_size']}, "
                          f"alpha {scores['length_penalty_alpha']})")
            save()
    save()


# ------------------------------------------------------------ orchestrator


def run_logged(command, log, timeout, env=None):
    """Runs `command`, copying its output to stdout and `log`; kills it at `timeout`."""
    log.write(f"$ {' '.join(map(str, command))}\n")
    log.flush()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1, env=env, cwd=ROOT, start_new_session=True)
    begin = time.perf_counter()
    import threading

    def pump():
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            log.write(line)
            log.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=max(1, timeout))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        code = "killed after %.0f s" % timeout
        process.wait()
    reader.join(timeout=5)
    log.write(f"# exit {code} after {time.perf_counter() - begin:.1f} s\n")
    log.flush()
    return code


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def summary(bench):
    lines = []
    k = bench.get("keras") or {}
    tps = k.get("tokens_per_second") or {}
    lines.append(f"keras-rnn ({k.get('backend')}, {k.get('pipeline')} pipeline, "
                 f"{k.get('parameters', 0):,} params, {k.get('steps_per_epoch')} steps/epoch): "
                 f"exit {bench.get('keras_exit')}")
    for e in k.get("epochs", []):
        lines.append(f"  epoch {e['epoch']:2d}: {e['tokens_per_second']:9.0f} tok/s, "
                     f"train {e['train_seconds']:6.1f} s, wall {e['wall_seconds_at_end']:6.1f} s, "
                     f"val_loss {e['val_loss']:.3f}, val BLEU {e['val_bleu']:.2f}")
    if tps:
        lines.append(f"  tokens/s first {tps['first']:.0f}, median {tps['median']:.0f}, "
                     f"last {tps['last']:.0f}; compile ~{k.get('compile_seconds_first_step_per_shape')} s "
                     f"(first step per shape), {k.get('compile_seconds_first_epoch_excess')} s "
                     f"(first-epoch excess); setup {k.get('setup_seconds')} s")
    for key, what in (("test", "best model"), ("test_averaged", "mean of the last checkpoints")):
        test = k.get(key)
        if test:
            lines.append(f"  {test['split']} ({what}): BLEU {test['bleu']} cased, "
                         f"{test['bleu_lowercased']} lowercased (beam {test['beam_size']}, "
                         f"{test['seconds_with_load_and_compile']} s)")
    if "torch_exit" not in bench:  # --skip-torch
        return "\n".join(lines)
    t = bench.get("torch") or {}
    lines.append(f"PyTorch reference: exit {bench.get('torch_exit')}")
    if t.get("tokens_per_second"):
        lines.append(f"  {t['tokens_per_second']:.0f} tok/s over {t['timed_steps']} steps "
                     f"({t['timed_seconds']:.1f} s; {t.get('device')}, torch {t.get('torch_version')}, "
                     f"matmul precision {t.get('float32_matmul_precision')})")
        if tps:
            lines.append(f"  keras-rnn median / PyTorch: {tps['median'] / t['tokens_per_second']:.2f}x")
    return "\n".join(lines)


def orchestrate(args):
    out = out_dir()
    log = (out / "gpu_bench.log").open("a", encoding="utf-8")
    keras_json, torch_json = out / "keras_part.json", out / "torch_part.json"
    for path in (keras_json, torch_json):
        path.unlink(missing_ok=True)
    bench = dict(started=time.strftime("%Y-%m-%d %H:%M:%S"), args=vars(args))
    try:
        bench["nvidia_smi"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True,
                                             text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        bench["nvidia_smi"] = repr(error)
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    python = [sys.executable] + (["-S"] if sys.flags.no_site else [])
    common = ["--config", args.config, "--data-dir", args.data_dir]
    for item in args.set:
        common += ["--set", item]
    if not args.skip_keras:
        reserve = 0 if args.skip_torch else args.torch_seconds + 60
        bench["keras_exit"] = run_logged(
            [*python, __file__, "--part", "keras", *common, "--run-dir", args.run_dir,
             "--max-seconds", str(args.max_seconds), "--result", str(keras_json),
             "--test-split", args.test_split, "--average-last", str(args.average_last),
             *(["--test-limit", str(args.test_limit)] if args.test_limit else [])],
            log, args.deadline - reserve - (time.perf_counter() - START), env)
        bench["keras"] = read_json(keras_json)
        write_json(out / "gpu_bench.json", bench)
    if not args.skip_torch:
        torch_env = dict(env, XLA_PYTHON_CLIENT_PREALLOCATE="false")
        bench["torch_exit"] = run_logged(
            [*python, str(ROOT / "benchmarks" / "torch_reference.py"), *common,
             "--tokenizers", args.run_dir, "--seconds", str(args.torch_seconds),
             "--result", str(torch_json)],
            log, args.deadline - (time.perf_counter() - START), torch_env)
        bench["torch"] = read_json(torch_json)
    bench["total_seconds"] = round(time.perf_counter() - START, 1)
    write_json(out / "gpu_bench.json", bench)
    text = summary(bench)
    log.write(text + "\n")
    print("\n==== summary (" + str(out / "gpu_bench.json") + ")\n" + text, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="training/configs/multi30k_de_en.yaml")
    parser.add_argument("--data-dir", default=".gpu/data/multi30k")
    parser.add_argument("--run-dir", default="/tmp/gpu_bench_run")
    parser.add_argument("--set", action="append", default=[], help="config override")
    parser.add_argument("--max-seconds", type=float, default=270,
                        help="stop our run after the epoch that ends past this (from start)")
    parser.add_argument("--deadline", type=float, default=530,
                        help="hard limit of the whole script (parts are killed past it)")
    parser.add_argument("--torch-seconds", type=float, default=60)
    parser.add_argument("--test-split", default="test_2016_flickr")
    parser.add_argument("--test-limit", type=int, help="first N test sentences (CPU trials)")
    parser.add_argument("--average-last", type=int, default=0,
                        help="also score the mean of the last K checkpoints (keras-rnn average)")
    parser.add_argument("--skip-keras", action="store_true")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--part", choices=["keras"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part == "keras":
        keras_part(args)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
