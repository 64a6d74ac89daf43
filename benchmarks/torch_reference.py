"""Plain eager PyTorch reference of the De->En model: training tokens/s.

    python benchmarks/torch_reference.py --tokenizers RUN_DIR --seconds 60

The architecture of `training/configs/multi30k_de_en.yaml` as
`keras_rnn.Seq2Seq` builds it, written the way bentrevett/pytorch-seq2seq
writes its attention model: source embedding (256) -> bidirectional cuDNN
`nn.GRU` (256 per direction) over packed sequences -> a tanh `Linear`
bridge from both final states to the decoder state (512); the decoder is a
Python loop over a `GRUCell` (512) with input feeding (input = target
embedding (256) and the previous attention vector), Bahdanau attention
(`v^T tanh(W q + U h_j)`, 512 units, source padding masked) queried by the
new cell state, attention vector `a_t = tanh(W_c [h_t; c_t])` (512),
dropout 0.3 on embeddings and on `a_t`, a `Linear` to the target vocabulary.
Loss: cross-entropy with label smoothing 0.1 over the real target tokens;
Adam (lr 2e-3), gradients clipped to a global norm of 1.0.

Batches are exactly ours: the run's SentencePiece models (`--tokenizers`, a
run directory holding `tokenizer.<lang>.model`, trained by our run),
`training.pipeline.BatchPlan` with the config's `max_tokens`,
`bucket_width` and seed, `ParallelData.batch` for the padding. Neither
Keras nor JAX is imported. After `--warmup-seconds` of steps (at least one
per bucket shape seen), steps are timed for `--seconds` (synchronized at
both ends); the result is real target tokens (EOS included, padding
excluded) per second, written as JSON to `--result`.

float32 matmuls use TF32 (`torch.set_float32_matmul_precision("high")`,
`--matmul-precision`) because XLA on JAX uses TF32 for float32 by default
on Ampere and later GPUs; cuDNN's RNNs allow TF32 by default.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from keras_rnn.training import data as data_lib
from keras_rnn.training.config import Config, bucket_width_for
from keras_rnn.training.pipeline import BatchPlan, ParallelData
from keras_rnn.training.tokenizer import Tokenizer


class Encoder(nn.Module):
    def __init__(self, vocab, embedding_dim, units, decoder_units, dropout):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding_dim, padding_idx=0)
        self.rnn = nn.GRU(embedding_dim, units, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * units, decoder_units)
        self.dropout = nn.Dropout(dropout)

    def forward(self, source, lengths):
        embedded = self.dropout(self.embedding(source))  # (B, S, E)
        packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        outputs, hidden = self.rnn(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(
            outputs, batch_first=True, total_length=source.shape[1])  # (B, S, 2U)
        state = torch.tanh(self.bridge(torch.cat([hidden[0], hidden[1]], dim=-1)))  # (B, D)
        return outputs, state


class Bahdanau(nn.Module):
    def __init__(self, query_dim, memory_dim, units):
        super().__init__()
        self.query = nn.Linear(query_dim, units, bias=False)
        self.memory = nn.Linear(memory_dim, units, bias=False)
        self.v = nn.Linear(units, 1, bias=False)

    def forward(self, query, keys, memory, mask):
        # query (B, D), keys (B, S, A) = memory layer of the encoder outputs.
        scores = self.v(torch.tanh(keys + self.query(query)[:, None])).squeeze(-1)  # (B, S)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights[:, None], memory).squeeze(1)  # (B, 2U)


class Decoder(nn.Module):
    def __init__(self, vocab, embedding_dim, units, memory_dim, dropout):
        super().__init__()
        self.units = units
        self.embedding = nn.Embedding(vocab, embedding_dim, padding_idx=0)
        self.cell = nn.GRUCell(embedding_dim + units, units)
        self.attention = Bahdanau(units, memory_dim, units)
        self.attention_layer = nn.Linear(units + memory_dim, units, bias=False)
        self.output = nn.Linear(units, vocab)
        self.dropout = nn.Dropout(dropout)

    def forward(self, target, memory, mask, state):
        embedded = self.dropout(self.embedding(target))  # (B, T, E)
        keys = self.attention.memory(memory)  # (B, S, A)
        attention = memory.new_zeros(memory.shape[0], self.units)  # a_0
        outputs = []
        for t in range(target.shape[1]):
            state = self.cell(torch.cat([embedded[:, t], attention], dim=-1), state)
            context = self.attention(state, keys, memory, mask)
            attention = torch.tanh(self.attention_layer(torch.cat([state, context], dim=-1)))
            outputs.append(attention)
        return self.output(self.dropout(torch.stack(outputs, dim=1)))  # (B, T, V)


class Seq2Seq(nn.Module):
    def __init__(self, source_vocab, target_vocab, m):
        super().__init__()
        encoder_units = m.encoder_units or m.units
        self.encoder = Encoder(source_vocab, m.embedding_dim, encoder_units, m.units,
                               m.embedding_dropout)
        self.decoder = Decoder(target_vocab, m.embedding_dim, m.units, 2 * encoder_units,
                               m.output_dropout)

    def forward(self, source, target):
        mask = source != 0
        memory, state = self.encoder(source, mask.sum(1))
        return self.decoder(target, memory, mask, state)


def load_data(config, tokenizer_dir):
    """Training pairs tokenized as `training.train.load_corpus` does."""
    d = config.data
    sources, targets = data_lib.read_parallel(
        *data_lib.corpus_paths(d.dir, d.train_split, d.source_lang, d.target_lang))
    source_tok = Tokenizer(Path(tokenizer_dir) / f"tokenizer.{d.source_lang}.model")
    target_tok = Tokenizer(Path(tokenizer_dir) / f"tokenizer.{d.target_lang}.model")
    data = ParallelData.encode(source_tok, target_tok, sources, targets)
    data = data.subset(np.flatnonzero(data.lengths() <= d.max_length))
    return data, source_tok.vocab_size, target_tok.vocab_size


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="training/configs/multi30k_de_en.yaml")
    parser.add_argument("--data-dir", default=".gpu/data/multi30k")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--tokenizers", required=True, help="run directory with tokenizer.*.model")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup-seconds", type=float, default=15)
    parser.add_argument("--matmul-precision", default="high", choices=["highest", "high", "medium"])
    parser.add_argument("--result", default="torch_reference.json")
    args = parser.parse_args()
    begin = time.perf_counter()
    config = Config.load(args.config, overrides=[
        f"data.dir={Path(args.data_dir).resolve()}", *args.set])
    t = config.training
    torch.manual_seed(t.seed)
    torch.set_float32_matmul_precision(args.matmul_precision)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data, source_vocab, target_vocab = load_data(config, args.tokenizers)
    # `bucket_width: auto` as our runs resolve it: our GPU runs compile with XLA.
    width = bucket_width_for(t.bucket_width, xla=device.type == "cuda")[0]
    plan = BatchPlan(data.lengths(), t.max_tokens, width, seed=t.seed,
                     curriculum_passes=t.curriculum_passes, curriculum_start=t.curriculum_start)
    model = Seq2Seq(source_vocab, target_vocab, config.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.learning_rate)
    loss_fn = nn.CrossEntropyLoss(ignore_index=0, label_smoothing=t.label_smoothing)
    setup_seconds = time.perf_counter() - begin

    def batches():
        for _, length, chunk in plan.stream():
            inputs, labels = data.batch(chunk, length)
            yield (torch.from_numpy(inputs["source"]).long().to(device, non_blocking=True),
                   torch.from_numpy(inputs["target"]).long().to(device, non_blocking=True),
                   torch.from_numpy(labels).long().to(device, non_blocking=True),
                   int(np.count_nonzero(labels)))

    def train_step(source, target, labels):
        optimizer.zero_grad(set_to_none=True)
        logits = model(source, target)
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), t.clip_norm)
        optimizer.step()
        return loss

    model.train()
    stream = batches()
    warm_start, warm_steps, shapes = time.perf_counter(), 0, set()
    while time.perf_counter() - warm_start < args.warmup_seconds:
        source, target, labels, _ = next(stream)
        shapes.add(source.shape[1])
        train_step(source, target, labels)
        warm_steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    warm_seconds = time.perf_counter() - warm_start
    losses, tokens, steps = [], 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        source, target, labels, real = next(stream)
        loss = train_step(source, target, labels)
        tokens += real
        steps += 1
        if steps % 50 == 0:
            losses.append(loss.item())  # also bounds how far the host runs ahead
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    losses.append(loss.item())
    result = dict(
        part="torch", torch_version=torch.__version__,
        device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        cudnn=torch.backends.cudnn.version() if device.type == "cuda" else None,
        float32_matmul_precision=args.matmul_precision,
        parameters=sum(p.numel() for p in model.parameters()),
        setup_seconds=round(setup_seconds, 2), warmup_steps=warm_steps,
        warmup_seconds=round(warm_seconds, 2), warmup_shapes=len(shapes),
        timed_steps=steps, timed_seconds=round(seconds, 3), tokens=tokens,
        tokens_per_second=round(tokens / seconds, 1), steps_per_second=round(steps / seconds, 2),
        loss_every_50_steps=[round(v, 4) for v in losses],
        steps_per_pass=plan.steps_per_pass(),
        max_memory_allocated_mib=(round(torch.cuda.max_memory_allocated() / 2**20)
                                  if device.type == "cuda" else None),
    )
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text(json.dumps(result, indent=1))
    print(f"PyTorch reference: {result['tokens_per_second']:.0f} target tokens/s "
          f"({steps} steps in {seconds:.1f} s after {warm_steps} warm-up steps; "
          f"{result['parameters']:,} parameters on {result['device']})", flush=True)


if __name__ == "__main__":
    main()
