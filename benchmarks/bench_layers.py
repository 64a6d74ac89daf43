"""Training-step time of keras_rnn layers against the Keras layers.

Run from the repository root (the backend is read from `KERAS_BACKEND`):

    KERAS_BACKEND=tensorflow python benchmarks/bench_layers.py
    KERAS_BACKEND=jax python benchmarks/bench_layers.py
    KERAS_BACKEND=jax python benchmarks/bench_layers.py \
        --only lstm --shapes small
    KERAS_BACKEND=tensorflow python benchmarks/bench_layers.py \
        --jit-compile true --json results_tf_xla.json

Smoke test (seconds, not a measurement):

    KERAS_BACKEND=jax python benchmarks/bench_layers.py --shapes tiny \
        --repeats 2 --steps 2 --warmup 1

What is timed: one training step, `model.train_on_batch(x, y)`, of a tiny
model `Input -> RNN layer (return_sequences=True) -> MSE against a fixed
random target`, compiled with `optimizer="sgd"`, `loss="mse"` and the
requested `jit_compile`, i.e. forward pass, loss, gradients and optimizer
update, as a user would run it. `train_on_batch` returns the loss as a Python
float, so each call waits for the device.

For each comparison both models are built and warmed up, then measured in
interleaved rounds (keras_rnn, Keras, keras_rnn, Keras, ...); each
measurement is the mean over `--steps` consecutive steps. The table reports
the median over rounds of each side and `ratio = keras_rnn / Keras` of the
medians, so slow drift of a shared machine affects both sides alike. The
targets are the project's goals; nothing is asserted.
"""

import argparse
import dataclasses
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import sys
import time

import numpy as np

# Run from a checkout without installing: make `import keras_rnn` find the
# package next to this directory.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import keras  # noqa: E402

import keras_rnn  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Shape:
    """Sizes of one benchmark input: `x` is `(batch, time, features)`."""

    batch: int
    time: int
    features: int
    units: int

    def __str__(self):
        return (
            f"batch {self.batch}, time {self.time}, "
            f"input {self.features}, units {self.units}"
        )


SHAPES = {
    "small": Shape(batch=32, time=30, features=128, units=256),
    "large": Shape(batch=64, time=50, features=256, units=512),
    # Smoke test only, not in the defaults.
    "tiny": Shape(batch=4, time=5, features=8, units=16),
}
DEFAULT_SHAPES = "small,large"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A keras_rnn layer and the Keras layer it is timed against.

    Attributes:
        name: short name for `--only`.
        label: text of the table's first column.
        ours: callable `units -> keras_rnn layer`.
        reference: callable `units -> keras.layers layer`.
        target: the ratio `keras_rnn / Keras` to stay at or under, or None
            for an informational row.
    """

    name: str
    label: str
    ours: object
    reference: object
    target: float = None


def _seq(layer_class, **kwargs):
    """A `units -> layer` factory with `return_sequences=True`."""
    return lambda units: layer_class(units, return_sequences=True, **kwargs)


DROPOUT = dict(dropout=0.25, recurrent_dropout=0.25)

COMPARISONS = [
    Comparison(
        "lstm",
        "LSTM vs keras LSTM",
        _seq(keras_rnn.LSTM),
        _seq(keras.layers.LSTM),
        1.0,
    ),
    Comparison(
        "gru",
        "GRU vs keras GRU",
        _seq(keras_rnn.GRU),
        _seq(keras.layers.GRU),
        1.0,
    ),
    Comparison(
        "lstm_layer_norm",
        "LSTM(layer_norm=True) vs keras LSTM",
        _seq(keras_rnn.LSTM, layer_norm=True),
        _seq(keras.layers.LSTM),
        1.15,
    ),
    Comparison(
        "gru_layer_norm",
        "GRU(layer_norm=True) vs keras GRU",
        _seq(keras_rnn.GRU, layer_norm=True),
        _seq(keras.layers.GRU),
        1.15,
    ),
    Comparison(
        "lstm_dropout",
        "LSTM(dropout=0.25, recurrent_dropout=0.25), both",
        _seq(keras_rnn.LSTM, **DROPOUT),
        _seq(keras.layers.LSTM, **DROPOUT),
        0.7,
    ),
    Comparison(
        "gru_recurrent_dropout",
        "GRU(recurrent_dropout=0.25), both",
        _seq(keras_rnn.GRU, recurrent_dropout=0.25),
        _seq(keras.layers.GRU, recurrent_dropout=0.25),
        None,
    ),
]


def parse_args(argv=None):
    """Parses the command line.

    Args:
        argv: arguments without the program name; `sys.argv[1:]` if None.

    Returns:
        An `argparse.Namespace`.
    """
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--jit-compile",
        choices=("auto", "true", "false"),
        default="auto",
        help="`jit_compile` passed to `model.compile` for both sides "
        "('auto' is what Keras picks: XLA on JAX, none on a CPU-only "
        "TensorFlow).",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=7,
        help="interleaved measurement rounds per comparison",
    )
    parser.add_argument(
        "--steps", type=int, default=10, help="training steps per measurement"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="untimed training steps per model before measuring "
        "(the first one compiles)",
    )
    parser.add_argument(
        "--shapes",
        default=DEFAULT_SHAPES,
        help="comma-separated shapes: small ({}), large ({})".format(
            SHAPES["small"], SHAPES["large"]
        ),
    )
    parser.add_argument(
        "--only",
        choices=[c.name for c in COMPARISONS],
        help="run this comparison only",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the results here"
    )
    args = parser.parse_args(argv)
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    for name in args.shapes:
        if name not in SHAPES:
            parser.error(
                f"unknown shape {name!r}; choose from {sorted(SHAPES)}"
            )
    for option in ("repeats", "steps"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1")
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the first step compiles)")
    return args


def _version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _accelerators():
    """Non-CPU devices the current backend sees, as strings."""
    if keras.backend.backend() == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform != "cpu"]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_physical_devices("GPU")]
    if keras.backend.backend() == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def environment():
    """The machine, backend, versions and command line, as a dict."""
    command = shlex.join(["python"] + sys.argv)
    for name in ("KERAS_BACKEND", "OMP_NUM_THREADS"):
        if name in os.environ:
            command = f"{name}={os.environ[name]} {command}"
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "accelerators": _accelerators(),
        "backend": keras.backend.backend(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "tensorflow": _version("tensorflow"),
        "jax": _version("jax"),
        "jaxlib": _version("jaxlib"),
        "torch": _version("torch"),
        "keras_rnn": keras_rnn.__version__,
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
    }


def build_model(layer, shape, jit_compile):
    """`Input -> layer`, compiled for training with SGD on an MSE loss.

    Args:
        layer: a recurrent layer with `return_sequences=True`.
        shape: the `Shape` of the inputs.
        jit_compile: `"auto"`, True or False, passed to `model.compile`.

    Returns:
        The compiled `keras.Model`.
    """
    inputs = keras.Input((shape.time, shape.features))
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit_compile)
    return model


def time_steps(model, x, y, steps):
    """Seconds per training step, averaged over `steps` consecutive steps."""
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps


def run_comparison(comparison, shape, args, jit_compile):
    """Builds, warms up and times both sides of one comparison.

    Args:
        comparison: the `Comparison`.
        shape: the `Shape`.
        args: parsed command line (`repeats`, `steps`, `warmup`).
        jit_compile: `"auto"`, True or False.

    Returns:
        A dict with the per-round times (seconds per step) of each side,
        their medians in ms, the ratio of medians, the target and the
        `jit_compile` Keras resolved for each model.
    """
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((shape.batch, shape.time, shape.features))
    y = rng.standard_normal((shape.batch, shape.time, shape.units))
    x, y = x.astype("float32"), y.astype("float32")

    layers = {
        "keras_rnn": comparison.ours(shape.units),
        "keras": comparison.reference(shape.units),
    }
    models = {
        side: build_model(layer, shape, jit_compile)
        for side, layer in layers.items()
    }
    for model in models.values():
        for _ in range(args.warmup):
            model.train_on_batch(x, y)

    times = {side: [] for side in models}
    for _ in range(args.repeats):
        for side, model in models.items():  # keras_rnn, keras, keras_rnn, ...
            times[side].append(time_steps(model, x, y, args.steps))

    ours_ms = 1e3 * statistics.median(times["keras_rnn"])
    ref_ms = 1e3 * statistics.median(times["keras"])
    ratio = ours_ms / ref_ms
    target = comparison.target
    result = {
        "comparison": comparison.name,
        "label": comparison.label,
        "shape": dataclasses.asdict(shape),
        "keras_rnn_ms": ours_ms,
        "keras_ms": ref_ms,
        "ratio": ratio,
        "target": target,
        "met": None if target is None else bool(ratio <= target),
        "jit_compile": {
            side: bool(model.jit_compile) for side, model in models.items()
        },
        "keras_rnn_s_per_step": times["keras_rnn"],
        "keras_s_per_step": times["keras"],
    }
    del layers, models
    keras.backend.clear_session()
    gc.collect()
    return result


def markdown_table(results):
    """The results of one shape as a Markdown table."""
    lines = [
        "| comparison | keras_rnn ms/step | Keras ms/step "
        "| ratio | target | met |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for r in results:
        if r["target"] is None:
            target, met = "-", "-"
        else:
            target = f"<= {r['target']:.2f}"
            met = "yes" if r["met"] else "no"
        lines.append(
            f"| {r['label']} | {r['keras_rnn_ms']:.2f} | {r['keras_ms']:.2f} "
            f"| {r['ratio']:.3f} | {target} | {met} |"
        )
    return "\n".join(lines)


def jit_note(results):
    """One line saying which `jit_compile` Keras resolved for the models."""
    used = {v for r in results for v in r["jit_compile"].values()}
    if len(used) == 1:
        return f"jit_compile used: {used.pop()} (all models)"
    parts = [
        f"{r['comparison']}: keras_rnn={r['jit_compile']['keras_rnn']}, "
        f"Keras={r['jit_compile']['keras']}"
        for r in results
    ]
    return "jit_compile used: " + "; ".join(parts)


def main(argv=None):
    """Runs the benchmark and prints (and optionally writes) the results."""
    args = parse_args(argv)
    jit_compile = {"auto": "auto", "true": True, "false": False}[
        args.jit_compile
    ]
    comparisons = [
        c for c in COMPARISONS if args.only is None or c.name == args.only
    ]
    env = environment()

    print("# keras_rnn layer benchmark: training step (forward + backward)\n")
    print(f"- command: `{env['command']}`")
    print(
        f"- machine: {env['cpu']}, {env['cpu_count']} cores "
        f"({env['cpus_usable']} usable); accelerators: "
        f"{', '.join(env['accelerators']) or 'none'}"
    )
    print(f"- backend: {env['backend']}")
    print(
        f"- versions: keras {env['keras']}, tensorflow {env['tensorflow']}, "
        f"jax {env['jax']} (jaxlib {env['jaxlib']}), torch {env['torch']}, "
        f"keras_rnn {env['keras_rnn']}, python {env['python']}"
    )
    if env["backend"] == "torch":
        import torch

        print(f"- torch intra-op threads: {torch.get_num_threads()}")
    print(f"- jit_compile requested: {args.jit_compile}")
    print(
        f"- repeats {args.repeats} (interleaved), steps/measurement "
        f"{args.steps}, warm-up steps {args.warmup}; ratio = keras_rnn / "
        "Keras of the median ms/step"
    )
    sys.stdout.flush()

    all_results = []
    for shape_name in args.shapes:
        shape = SHAPES[shape_name]
        results = []
        for comparison in comparisons:
            print(
                f"  running {comparison.name} @ {shape_name} ...",
                file=sys.stderr,
            )
            results.append(run_comparison(comparison, shape, args, jit_compile))
        print(f"\n## {shape_name}: {shape}\n")
        print(markdown_table(results))
        print(f"\n{jit_note(results)}")
        sys.stdout.flush()
        for r in results:
            r["shape_name"] = shape_name
        all_results.extend(results)

    if args.json:
        settings = {
            "jit_compile": args.jit_compile,
            "repeats": args.repeats,
            "steps": args.steps,
            "warmup": args.warmup,
            "shapes": args.shapes,
            "only": args.only,
        }
        with open(args.json, "w") as f:
            report = {
                "environment": env,
                "settings": settings,
                "results": all_results,
            }
            json.dump(report, f, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
