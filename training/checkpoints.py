"""Checkpoints of a training run: written atomically, the newest named in `latest`.

    checkpoints/step-00000060/   weights + optimizer, state.json, config.yaml
    checkpoints/latest           the name of the newest complete checkpoint

A checkpoint is written to a temporary directory renamed into place, then
`latest` is replaced. `state.json` holds the run's state
(`TrainingRun.fresh_state`) and the dropout seed-generator states, which the
weights file does not hold.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np

SEED_STATE = "seed_generator_state"


def write_atomic(path, text):
    """Replaces `path` with `text` in one rename (never half-written)."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def seed_states(model):
    """Dropout / sampling seed-generator states (not in the weights file)."""
    return {v.path: np.asarray(v).tolist() for v in model.variables if SEED_STATE in v.path}


def set_seed_states(model, states):
    for v in model.variables:
        if v.path in states:
            v.assign(np.asarray(states[v.path], dtype=v.dtype))


class Checkpoints:
    """Atomic checkpoints in `directory`, the newest named in `latest`.

    Args:
        directory: the run's `checkpoints/` directory.
        keep: how many checkpoints to keep.
    """

    def __init__(self, directory, keep=2):
        self.directory = Path(directory)
        self.keep = keep

    def latest(self):
        pointer = self.directory / "latest"
        if not pointer.exists():
            return None
        path = self.directory / pointer.read_text().strip()
        return path if (path / "state.json").exists() else None

    def save(self, model, state, config):
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"step-{state['step']:08d}"
        temporary = self.directory / f".tmp-{name}"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        model.save_weights(temporary / "model.weights.h5")
        state = dict(state, seeds=seed_states(model))
        (temporary / "state.json").write_text(json.dumps(state, indent=1))
        config.save(temporary / "config.yaml")
        final = self.directory / name
        if final.exists():
            old = self.directory / f".old-{name}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            shutil.rmtree(old)
        os.replace(temporary, final)
        write_atomic(self.directory / "latest", name)
        for old in sorted(self.directory.glob("step-*"))[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def restore(self, model, path):
        model.load_weights(path / "model.weights.h5")
        state = json.loads((path / "state.json").read_text())
        set_seed_states(model, state.pop("seeds", {}))
        return state
