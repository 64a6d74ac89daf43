"""keras-rnn against the plain PyTorch reference, side by side in one process.

    KERAS_BACKEND=tensorflow python benchmarks/bench_cpu_vs_torch.py \
        training/configs/multi30k_de_en.yaml --rounds 6 --block 8 \
        [--set training.bucket_width=4]

Both models train on the same batches of the config's `BatchPlan` (the
stream `keras-rnn train` draws, seed and `bucket_width` included): the
config's `keras_rnn.Seq2Seq` on the Keras backend, and
`benchmarks/torch_reference.py`'s eager PyTorch model of the same
architecture. Blocks of `--block` steps alternate, keras-rnn then PyTorch,
for `--rounds` rounds, each block on the next batches of the stream and both
on the same batches, so a slow stretch of a shared or virtual machine lands
on both and the ratio stays fair (on the 2-core VM the same command gave
68 s and 86 s on two runs). Before timing, every bucket shape is stepped
once by both (XLA compiles on JAX; nothing is compiled on TensorFlow
without XLA).

Reports real target tokens/s (EOS included, padding excluded) of each, per
round and overall, and the ratio; and, from the multiply-adds of the model
counted analytically (`training_flops`), the FLOP/s each reaches against
the peak of this machine's float32 matmul (PyTorch, 2048^3, measured in
every round). `--result` writes them as JSON.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def training_flops(m, gates, vocab, batch, length):
    """Matmul FLOPs of one training step (forward + backward = 3x forward).

    The model of `training/configs/multi30k_de_en.yaml` (both
    implementations): embeddings `E`, a bidirectional encoder of `U` per
    direction, a decoder cell of `D` with input feeding (input `E + D`),
    Bahdanau attention of `D` units over `2U` memory, the attention layer
    `[h; c] -> D`, the projection `D -> vocab`; `gates` = 3 (GRU) or 4
    (LSTM). Element-wise work, the bridge and the loss are left out. Source
    and target are both `length` long (the batches pad both to it).
    """
    e, d = m.embedding_dim, m.units
    u = m.encoder_units or m.units
    encoder = 2 * (2 * e * gates * u + 2 * u * gates * u) + 2 * (2 * u) * d  # + keys
    decoder = (2 * (e + d) * gates * d + 2 * d * gates * d + 2 * d * d
               + length * (3 * d + 2 * 2 * u)  # scores and context over the source
               + 2 * (d + 2 * u) * d + 2 * d * vocab)
    return 3 * batch * length * (encoder + decoder)


def peak_matmul_flops(torch, n=2048, repeats=3):
    """float32 FLOP/s of an n^3 matmul (PyTorch's MKL/oneDNN), best of `repeats`."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--block", type=int, default=8, help="steps per block")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--result")
    args = parser.parse_args()

    import keras
    import torch
    from torch import nn

    import torch_reference
    from bench_training import one_batch_per_shape, set_up
    from keras_rnn.training.model import jit_compile_for

    config, run = set_up(args.config, args.set)
    t = config.training
    model, data, plan = run.model, run.corpus.train, run.plan
    torch.manual_seed(t.seed)
    reference = torch_reference.Seq2Seq(run.corpus.source_tokenizer.vocab_size,
                                        run.corpus.target_tokenizer.vocab_size, config.model)
    optimizer = torch.optim.Adam(reference.parameters(), lr=t.learning_rate)
    loss_fn = nn.CrossEntropyLoss(ignore_index=0, label_smoothing=t.label_smoothing)
    reference.train()

    def torch_step(inputs, labels):
        source = torch.from_numpy(inputs["source"]).long()
        target = torch.from_numpy(inputs["target"]).long()
        optimizer.zero_grad(set_to_none=True)
        logits = reference(source, target)
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]),
                       torch.from_numpy(labels).long().reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(reference.parameters(), t.clip_norm)
        optimizer.step()
        return float(loss)

    def keras_step(inputs, labels):
        return float(model.train_on_batch(inputs, labels))

    for batch in one_batch_per_shape(data, plan):  # every bucket shape once, untimed
        keras_step(*batch)
        torch_step(*batch)

    stream = plan.stream(0, args.rounds * args.block)
    gates = 4 if config.model.cell == "lstm" else 3
    vocab = run.corpus.target_tokenizer.vocab_size
    rounds = []
    for _ in range(args.rounds):
        batches = [data.batch(chunk, length) for _, length, chunk in
                   (next(stream) for _ in range(args.block))]
        tokens = sum(int(np.count_nonzero(labels)) for _, labels in batches)
        flops = sum(training_flops(config.model, gates, vocab, *labels.shape)
                    for _, labels in batches)
        seconds = {}
        for name, step in (("keras_rnn", keras_step), ("torch", torch_step)):
            start = time.perf_counter()
            for batch in batches:
                step(*batch)
            seconds[name] = time.perf_counter() - start
        rounds.append(dict(tokens=tokens, flops=flops, peak_flops=peak_matmul_flops(torch),
                           **{f"{k}_seconds": round(v, 3) for k, v in seconds.items()}))
        print(f"round {len(rounds)}: keras-rnn {tokens / seconds['keras_rnn']:6.0f}, "
              f"PyTorch {tokens / seconds['torch']:6.0f} real target tok/s "
              f"({seconds['torch'] / seconds['keras_rnn']:.2f}x)", flush=True)
    tokens = sum(r["tokens"] for r in rounds)
    ours = tokens / sum(r["keras_rnn_seconds"] for r in rounds)
    theirs = tokens / sum(r["torch_seconds"] for r in rounds)
    ratios = [r["torch_seconds"] / r["keras_rnn_seconds"] for r in rounds]
    flops = sum(r["flops"] for r in rounds)
    peak = float(np.median([r["peak_flops"] for r in rounds]))
    fraction = {name: flops / sum(r[f"{name}_seconds"] for r in rounds) / peak
                for name in ("keras_rnn", "torch")}
    result = dict(
        config=args.config, overrides=args.set, backend=keras.backend.backend(),
        jit_compile=jit_compile_for(t.jit_compile)[0], bucket_width=t.bucket_width,
        torch_version=torch.__version__, torch_threads=torch.get_num_threads(),
        steps=args.rounds * args.block, tokens=tokens,
        keras_rnn_tokens_per_second=round(ours, 1), torch_tokens_per_second=round(theirs, 1),
        ratio=round(ours / theirs, 3), ratio_min_round=round(min(ratios), 3),
        ratio_max_round=round(max(ratios), 3),
        training_gflop=round(flops / 1e9, 1), peak_matmul_gflops=round(peak / 1e9, 1),
        keras_rnn_fraction_of_peak=round(fraction["keras_rnn"], 3),
        torch_fraction_of_peak=round(fraction["torch"], 3), rounds=rounds,
    )
    print(f"{keras.backend.backend()}, bucket_width {t.bucket_width}, {result['steps']} steps "
          f"each: keras-rnn {ours:.0f}, PyTorch {theirs:.0f} real target tok/s: "
          f"{result['ratio']:.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f}x)")
    print(f"matmul work {flops / 1e9:.0f} GFLOP; float32 matmul peak {peak / 1e9:.0f} GFLOP/s "
          f"(2048^3); keras-rnn reaches {100 * fraction['keras_rnn']:.0f}% of it, "
          f"PyTorch {100 * fraction['torch']:.0f}%")
    if args.result:
        Path(args.result).parent.mkdir(parents=True, exist_ok=True)
        Path(args.result).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
