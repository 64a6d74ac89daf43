"""Checkpoints of a training run: atomic, revisioned, found again after any kill.

    checkpoints/step-00000060/     weights + optimizer, state.json, config.yaml
    checkpoints/step-00000060.1/   a later save at the same step (revision 1)
    checkpoints/latest             the name of the newest complete checkpoint

A checkpoint is written to a temporary directory, renamed to a name that
does not exist yet, and only then named in `latest` (itself replaced
atomically); older checkpoints are removed last. So `latest` never names a
missing or half-written directory, whatever moment a `kill -9` hits; should
it (a pointer from an older version, a directory removed by hand), `latest()`
falls back to the newest complete checkpoint on disk and says so.

`state.json` records where the run stands (`TrainingRun.fresh_state`): the
global step, the epochs validated, the phase (`train`: inside an epoch;
`validate`: the epoch's steps are done and its validation is pending), the
learning-rate scale, early-stopping counters, the running epoch loss and the
dropout seed-generator states (which the weights file does not hold).
"""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from keras_rnn.training import faults

SEED_STATE = "seed_generator_state"
_NAME = re.compile(r"^step-(\d{8})(?:\.(\d+))?$")


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


def _key(path):
    """(step, revision) of a checkpoint directory name, or None."""
    match = _NAME.match(path.name)
    return None if match is None else (int(match[1]), int(match[2] or 0))


def _complete(path):
    return (path / "state.json").exists() and (path / "model.weights.h5").exists()


class Checkpoints:
    """Atomic checkpoints in `directory`, the newest named in `latest`.

    Args:
        directory: the run's `checkpoints/` directory.
        keep: how many checkpoints (distinct steps) to keep.
        log: a function of one string, for the fallback message.
    """

    def __init__(self, directory, keep=2, log=print):
        self.directory = Path(directory)
        self.keep = keep
        self.log = log

    def _on_disk(self):
        """Complete checkpoint directories, oldest first."""
        if not self.directory.exists():
            return []
        found = [p for p in self.directory.iterdir() if _key(p) is not None and _complete(p)]
        return sorted(found, key=_key)

    def complete(self):
        """Complete checkpoints, one per step (its newest revision), oldest first."""
        by_step = {_key(path)[0]: path for path in self._on_disk()}
        return [by_step[step] for step in sorted(by_step)]

    def latest(self):
        """The newest complete checkpoint (a Path), or None for a fresh run."""
        pointer = self.directory / "latest"
        named = None
        if pointer.exists():
            named = self.directory / pointer.read_text().strip()
            if _complete(named):
                return named
        on_disk = self._on_disk()
        if named is not None:
            fallback = on_disk[-1] if on_disk else None
            self.log(f"{pointer} names {named.name}, which is missing or incomplete; "
                     + (f"resuming from the newest complete checkpoint, {fallback.name}."
                        if fallback else "no complete checkpoint is left: starting afresh."))
            return fallback
        return on_disk[-1] if on_disk else None

    def save(self, model, state, config):
        """Writes a checkpoint of `model` and `state`; returns its directory.

        On any error (a full disk) the temporary directory is removed and
        `latest` still names the previous complete checkpoint.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        step = state["step"]
        name = f"step-{step:08d}"
        revisions = [_key(p)[1] for p in self.directory.glob(f"{name}*") if _key(p)]
        if revisions:
            name = f"{name}.{max(revisions) + 1}"
        temporary = self.directory / f".tmp-{name}"
        shutil.rmtree(temporary, ignore_errors=True)
        try:
            temporary.mkdir()
            model.save_weights(temporary / "model.weights.h5")
            faults.point("checkpoint.write", step)
            state = dict(state, seeds=seed_states(model))
            (temporary / "state.json").write_text(json.dumps(state, indent=1))
            config.save(temporary / "config.yaml")
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        final = self.directory / name
        os.replace(temporary, final)
        faults.point("checkpoint.renamed", step)
        write_atomic(self.directory / "latest", name)
        faults.point("checkpoint.named", step)
        self._prune(final)
        return final

    def _prune(self, newest):
        """Removes superseded revisions, then all but the `keep` newest steps."""
        by_step = {}
        for path in self._on_disk():
            by_step.setdefault(_key(path)[0], []).append(path)
        doomed = [p for paths in by_step.values() for p in paths[:-1]]
        doomed += [paths[-1] for step, paths in sorted(by_step.items())[:-self.keep]]
        for path in doomed:
            if path != newest:
                shutil.rmtree(path, ignore_errors=True)
        for stale in self.directory.glob(".tmp-*"):  # left by a kill during a save
            shutil.rmtree(stale, ignore_errors=True)

    def restore(self, model, path):
        """Loads the weights and seeds of checkpoint `path`; returns its state."""
        model.load_weights(path / "model.weights.h5")
        state = json.loads((path / "state.json").read_text())
        set_seed_states(model, state.pop("seeds", {}))
        return state
