"""Named moments of a training run where a test can inject a fault.

`point(name, step)` does nothing unless the environment variable
`KERAS_RNN_FAULT` names that moment, as `NAME@STEP[:ACTION]` (several
separated by commas); then it acts at once:

- `kill` (the default): `SIGKILL` to this process, as `kill -9` would;
- `sigint`: `SIGINT` to this process, as Ctrl-C would;
- `enospc`: raises `OSError(ENOSPC)`, as a full disk would.

The moments (each with the global step at which it happens):
`step` (a training step done, before its checkpoint), `checkpoint.write`
(weights written to the temporary directory), `checkpoint.renamed` (the new
checkpoint in place, `latest` not yet updated), `checkpoint.named` (`latest`
updated, old checkpoints not yet pruned), `validation` (an epoch's steps
done, before its validation loss), `validation.bleu` (before the validation
BLEU), `validation.best` (the best model saved, before the epoch-end
checkpoint). Tests kill a run at each and check that the resumed run ends
with the uninterrupted run's weights; no timing is involved.
"""

import errno
import os
import signal

VARIABLE = "KERAS_RNN_FAULT"


def point(name, step):
    """Injects the fault `KERAS_RNN_FAULT` asks for at moment `name`, step `step`."""
    spec = os.environ.get(VARIABLE)
    if not spec:
        return
    for item in spec.split(","):
        where, _, action = item.strip().partition(":")
        if where != f"{name}@{step}":
            continue
        action = action or "kill"
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "sigint":
            os.kill(os.getpid(), signal.SIGINT)
        elif action == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"injected at {name}@{step}")
        else:
            raise ValueError(f"{VARIABLE}: unknown action {action!r} in {item!r}.")
