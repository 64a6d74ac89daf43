"""The README and the guides in docs/ say what the code does now.

- Every ```python block of README.md, and each ```python block of a
  docs/*.md guide that the line `<!-- test: run -->` precedes, runs in a
  fresh interpreter on the suite's backend. A ```text block right after it
  (nothing but blank lines between) is what it prints: stdout is compared
  with it line by line (trailing spaces and blank lines at either end
  ignored). ```console blocks (long runs, servers) are not run.
- Every relative link in README.md and docs/*.md names a file that exists,
  and, for `FILE.md#anchor`, a heading of that file.
- Every `keras-rnn COMMAND` in the code of README.md and docs/*.md is a
  command of `keras-rnn --help`, every `--flag` on that command line is one
  of the command's, and every `make TARGET` is a target of the Makefile.

    KERAS_BACKEND=tensorflow python -m pytest -q tests/test_readme.py
"""

import concurrent.futures
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUIDES = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, *GUIDES]
RUN_MARKER = "<!-- test: run -->"
BLOCK_TIMEOUT_S = 300
FENCE = re.compile(r"^(```+)\s*([\w+-]*)")


class Block:
    """One fenced code block: its file, first line (1-based), language, text."""

    def __init__(self, path, line, language, text, marked, after_blank_only):
        self.path, self.line, self.language, self.text = path, line, language, text
        self.marked = marked  # `<!-- test: run -->` before it
        self.after_blank_only = after_blank_only  # only blank lines since the last block
        self.expected = None  # the ```text block that follows a python block

    @property
    def id(self):
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def read_blocks(path):
    """The fenced code blocks of a Markdown file, in order, with each python
    block's expected output attached."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, between, i = [], [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            between.append(lines[i])
            i += 1
            continue
        fence, language, start = match.group(1), match.group(2).lower(), i + 1
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        prose = [line.strip() for line in between if line.strip()]
        blocks.append(Block(path, start, language, "\n".join(body) + "\n",
                            marked=bool(prose) and prose[-1] == RUN_MARKER,
                            after_blank_only=not prose))
        between = []
    for previous, block in zip(blocks, blocks[1:]):
        if previous.language == "python" and block.language == "text" and block.after_blank_only:
            previous.expected = block.text
    return blocks


def prose_of(path):
    """The file's text outside fenced code blocks."""
    kept, inside = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = FENCE.match(line)
        if inside is None and match:
            inside = match.group(1)
        elif inside is not None and line.startswith(inside):
            inside = None
        elif inside is None:
            kept.append(line)
    return "\n".join(kept)


def runnable_blocks():
    return [block for path in DOCUMENTS for block in read_blocks(path)
            if block.language == "python" and (path == README or block.marked)]


RUNNABLE = runnable_blocks()


def _normalized(text):
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()).strip("\n")


def _run(block, cwd):
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-c", block.text], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)


def _keras_rnn_help():
    script = Path(sys.executable).with_name("keras-rnn")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "keras_rnn.cli"]
    return subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


@pytest.fixture(scope="module")
def background(request, tmp_path_factory):
    """Starts `keras-rnn --help` and every selected block at once, two at a
    time (each is mostly one interpreter's start-up and compilation), and
    hands out their futures by block id (and "--help")."""
    wanted = {item.callspec.params["block"].id for item in request.session.items
              if getattr(item, "originalname", None) == "test_block_runs"
              and hasattr(item, "callspec")}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    futures = {"--help": pool.submit(_keras_rnn_help)}
    futures.update({block.id: pool.submit(_run, block, tmp_path_factory.mktemp("block"))
                    for block in RUNNABLE if block.id in wanted})
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def test_readme_has_runnable_examples():
    assert any(block.path == README for block in RUNNABLE)
    assert any(block.expected is not None for block in RUNNABLE if block.path == README)


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda block: block.id)
def test_block_runs(block, background):
    result = background[block.id].result()
    assert result.returncode == 0, (
        f"{block.id} failed (exit status {result.returncode}):\n{result.stderr[-4000:]}")
    if block.expected is not None:
        assert _normalized(result.stdout) == _normalized(block.expected), (
            f"{block.id} printed\n{result.stdout}\nbut the document shows\n{block.expected}")


# Links -----------------------------------------------------------------------

LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def github_anchors(path):
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors, seen = set(), {}
    for line in prose_of(path).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    broken = []
    for target in LINK.findall(prose_of(path)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in github_anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert not broken, f"{path.relative_to(ROOT)}:\n" + "\n".join(broken)


# Commands --------------------------------------------------------------------

def code_of(path):
    """Inline code spans and the text of non-python code blocks."""
    spans = re.findall(r"`([^`\n]+)`", prose_of(path))
    blocks = [block.text for block in read_blocks(path) if block.language != "python"]
    return spans + blocks


COMMAND = re.compile(r"(?:^|[\s/`$(])keras-rnn\s+([a-z][\w-]*)(.*)")


def command_lines(path):
    """Each `keras-rnn COMMAND ...` in the file's code as (command, the words
    after it up to a pipe, `;`, `&&` or a line end). A command named in a
    shell comment comes with no words: only its name is checked."""
    found = []
    for code in code_of(path):
        for line in code.replace("\\\n", " ").splitlines():
            command, _, comment = line.partition(" #")
            for match in COMMAND.finditer(command):
                rest = re.split(r"\s(?:\||;|&&)", match.group(2))[0]
                try:
                    words = shlex.split(rest)
                except ValueError:
                    words = rest.split()
                found.append((match.group(1), words))
            found.extend((match.group(1), []) for match in COMMAND.finditer(comment))
    return found


@pytest.fixture(scope="module")
def help_commands(background):
    """The commands `keras-rnn --help` lists."""
    result = background["--help"].result()
    assert result.returncode == 0, result.stderr
    choices = re.search(r"\{([\w,-]+)\}", result.stdout)
    assert choices, result.stdout
    return set(choices.group(1).split(","))


def test_every_command_is_documented(help_commands):
    named = {command for path in DOCUMENTS for command, _ in command_lines(path)}
    assert help_commands <= named, f"no guide shows {sorted(help_commands - named)}"


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_and_flags_exist(path, help_commands):
    from keras_rnn.cli import build_parser

    parser = build_parser()
    common = {option for action in parser._actions for option in action.option_strings}
    wrong = []
    for command, words in command_lines(path):
        if command not in help_commands:
            wrong.append(f"keras-rnn {command}: not a command of keras-rnn --help")
            continue
        subparser = parser.commands.choices[command]
        options = common | {option for action in subparser._actions
                            for option in action.option_strings}
        for word in words:
            flag = word.split("=")[0]
            if re.match(r"^--?[a-zA-Z]", flag) and flag not in options:
                wrong.append(f"keras-rnn {command} {flag}: no such flag")
    assert not wrong, f"{path.relative_to(ROOT)}:\n" + "\n".join(sorted(set(wrong)))


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_make_targets_exist(path):
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+)\s*:(?!=)", makefile, flags=re.MULTILINE))
    named = {match for code in code_of(path)
             for match in re.findall(r"(?:^|[\s`$])make\s+([a-z][\w-]*)", code)}
    assert named <= targets, f"{path.relative_to(ROOT)}: no make target {sorted(named - targets)}"
