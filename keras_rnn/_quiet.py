"""Keeps TensorFlow's native log lines off a `keras-rnn` command's stderr.

TensorFlow 2.21's C++ libraries (and XLA's, loaded by JAX and tf.data) log
through Abseil before anything calls `absl::InitializeLog()`, and Abseil
then writes every message to stderr whatever `TF_CPP_MIN_LOG_LEVEL` says
(abseil/abseil-cpp#1718, tensorflow/tensorflow#102212): "oneDNN custom
operations are on", "Could not find cuda drivers", "This TensorFlow binary
is optimized...", once per library loaded. No setting reaches those lines,
so the command line (and only it: a program that imports keras_rnn keeps
its stderr untouched) reads its own stderr through a pipe and drops them.
(Calling Abseil's `SetStderrThreshold` through ctypes does not reach them:
TensorFlow 2.21's libraries carry several private copies of Abseil, and the
lines come from copies that export nothing.)

Which lines go follows `TF_CPP_MIN_LOG_LEVEL`'s meaning: the user's value
when set (0 keeps all), else 3 (INFO, WARNING and ERROR dropped; FATAL
kept). `keras-rnn --verbose ...` keeps everything. Python's own output
(tracebacks, warnings, the commands' messages) passes unchanged.

This runs from `keras_rnn/__init__.py`, before Keras is imported, since
`python -m keras_rnn.cli` and the `keras-rnn` script import the package
(and with it Keras and TensorFlow) before the command line's code runs.
"""

import atexit
import faulthandler
import os
import re
import sys
import threading

# Abseil's line prefix, `I0000 00:00:1796244047.706072    3437 port.cc:153] `
# (severity I, W, E or F), Abseil's notice, and the second line of
# TensorFlow's CPU-feature message.
_NATIVE = re.compile(rb"([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] ")
_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called"
_CPU_FEATURES = b"To enable the following instructions: "
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}


def running_the_command_line(argv=None):
    """Whether this process is `keras-rnn ...` or `python -m keras_rnn.cli ...`."""
    argv = list(getattr(sys, "orig_argv", sys.argv) if argv is None else argv)
    if any(os.path.basename(a) == "keras-rnn" for a in argv[:2]):  # [python,] the script
        return True
    return any(a == "-m" and b in ("keras_rnn.cli", "keras_rnn.cli.__main__")
               for a, b in zip(argv, argv[1:]))


def drops(line, level):
    """Whether `line` (bytes) is a native log line below `level` to drop."""
    if line.startswith(_NOTICE) or line.startswith(_CPU_FEATURES):
        return level > 0
    match = _NATIVE.match(line)
    return bool(match) and _SEVERITY[match.group(1)] < level


def _may_become_native(tail):
    """Whether an unfinished line could still turn out to be a native log line."""
    return (any(prefix.startswith(tail) or tail.startswith(prefix)
                for prefix in (_NOTICE, _CPU_FEATURES))
            or re.match(rb"[IWEF]\d{0,4}$|[IWEF]\d{4} ", tail) is not None)


class _StderrFilter:
    """Replaces file descriptor 2 with a pipe whose lines a thread copies
    to the real stderr, minus the native log lines below `level`."""

    def __init__(self, level):
        self.level = level
        self.closed = False
        self.stderr = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.read = read
        self.thread = threading.Thread(target=self._pump, name="keras-rnn-stderr", daemon=True)
        self.thread.start()
        # A crash must not die in the pipe with the thread that copies it:
        # fatal signals print their Python traceback on the real stderr.
        faulthandler.enable(file=self.stderr)
        atexit.register(self.close)

    def _write(self, data):
        while data:
            data = data[os.write(self.stderr, data):]

    def _pump(self):
        pending = b""
        while True:
            chunk = os.read(self.read, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            self._write(b"".join(line + b"\n" for line in lines
                                 if not drops(line, self.level)))
            if pending and not _may_become_native(pending):
                self._write(pending)  # a prompt or a progress bar: no newline yet
                pending = b""
        if pending and not drops(pending, self.level):
            self._write(pending)
        os.close(self.read)

    def close(self):
        """Puts the real stderr back and copies what is still in the pipe."""
        if self.closed:
            return
        self.closed = True
        sys.stderr.flush()
        os.dup2(self.stderr, 2)  # closes the pipe's write end: the thread sees its end
        # (unless a child process still holds it: then do not wait for it long)
        self.thread.join(timeout=1)


_FILTER = None


def quiet_native_logs():
    """In the command line only: drops TensorFlow's native log lines from
    stderr (see the module docstring). Returns the filter, or None."""
    global _FILTER
    if not running_the_command_line():
        return None
    argv = getattr(sys, "orig_argv", sys.argv)
    if "--verbose" in argv:
        return None
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        level = int(level)
    except ValueError:
        level = 3
    if level > 0 and _FILTER is None:
        _FILTER = _StderrFilter(level)
    return _FILTER


def restore_stderr():
    """Copies what is still in the filter's pipe and puts the real stderr
    back: for a process about to end with `os._exit`, which skips `atexit`."""
    if _FILTER is not None:
        _FILTER.close()
