"""The house rules, read from the code: the import graph, the wheel, and the
command line on the smallest install that claims to work.

- Layers: the core `keras_rnn` <- `keras_rnn.training` <- `keras_rnn.serving`
  <- `keras_rnn.cli`, each its own folder (`keras_rnn/`, `training/`,
  `serving/`, `cli/`), with no links and no exemptions. A module imports
  only its own layer and those below it.
- One import name per distribution: the wheel puts `keras_rnn` (and its
  dist-info) into site-packages and nothing generic (`training`, `serving`).
- The command line needs only what its command needs: each extra, installed
  from the wheel into a new environment, runs its commands
  (`tests/install/`, run once by `make test-install`).
"""

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import ROOT, build_wheel

# The folders of each layer, in order, and the import prefix of each.
LAYERS = [
    ("core", ROOT / "keras_rnn", "keras_rnn"),
    ("training", ROOT / "training", "keras_rnn.training"),
    ("serving", ROOT / "serving", "keras_rnn.serving"),
    ("cli", ROOT / "cli", "keras_rnn.cli"),
]
FORBIDDEN_TOP_LEVEL = {"training", "serving", "cli"}


def module_files():
    """(layer index, dotted module name, path) of every module in the repository's packages."""
    for index, (_, folder, prefix) in enumerate(LAYERS):
        for path in sorted(folder.rglob("*.py")):
            relative = path.relative_to(folder)
            parts = [*relative.parts[:-1], relative.stem]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield index, ".".join([prefix, *parts]), path


def imports_of(path, module):
    """Every module name `path` imports, anywhere in the file (relative ones resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def layer_of(name):
    """The layer index of an imported `keras_rnn...` name (None for other packages)."""
    for index in reversed(range(len(LAYERS))):
        prefix = LAYERS[index][2]
        if name == prefix or name.startswith(prefix + "."):
            return index
    return None


def test_no_module_imports_upward_or_a_generic_top_level_name():
    modules = list(module_files())
    assert len(modules) > 30, "the scan found too few modules"
    upward, generic = [], []
    for own, module, path in modules:
        for name in imports_of(path, module):
            if name.split(".")[0] in FORBIDDEN_TOP_LEVEL:
                generic.append(f"{path.relative_to(ROOT)} imports {name}")
            target = layer_of(name)
            if target is not None and target > own:
                upward.append(f"{path.relative_to(ROOT)} ({LAYERS[own][0]}) "
                              f"imports {name}")
    assert not generic, "\n".join(generic)
    assert not upward, "\n".join(upward)


def test_the_core_imports_neither_training_nor_serving_nor_the_command_line():
    for index, module, path in module_files():
        if index == 0:
            names = set(imports_of(path, module))
            assert not {n for n in names if layer_of(n) != 0 and layer_of(n) is not None}, path


def test_the_repository_tracks_no_links_and_setup_cfg_lists_every_package():
    import configparser

    tracked = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    assert not [line for line in tracked.splitlines() if line.startswith("120000")]
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {module for _, module, path in module_files() if path.name == "__init__.py"}
    assert listed == found, listed ^ found


def test_the_flags_module_imports_only_argparse_and_plain_data():
    cli = ROOT / "cli" / "__init__.py"
    tree = ast.parse(cli.read_text())
    top_level = set()
    for node in tree.body:  # module level only: commands import inside functions
        if isinstance(node, ast.Import):
            top_level |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            top_level.add(node.module)
    assert top_level <= {"argparse", "importlib", "sys", "keras_rnn.cli.extras",
                         "keras_rnn.serving.config"}, top_level
    for name in ("cli/extras.py", "serving/config.py"):
        imported = set(imports_of(ROOT / name, "keras_rnn.x"))
        assert imported <= {"dataclasses", "importlib.util", "sys"}, (name, imported)


@pytest.fixture(scope="module")
def wheel_file(tmp_path_factory):
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def wheel(wheel_file):
    with zipfile.ZipFile(wheel_file) as archive:
        return archive.namelist()


def test_the_wheel_installs_one_import_name_with_the_configs_and_protos(wheel):
    top_level = {name.split("/")[0] for name in wheel}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"keras_rnn"}
    for expected in ("keras_rnn/training/configs/multi30k_de_en.yaml",
                     "keras_rnn/training/configs/quick.yaml",
                     "keras_rnn/serving/protos/keras_rnn/serving/translator.proto",
                     "keras_rnn/serving/translator_pb2_grpc.py",
                     "keras_rnn/cli/__init__.py",
                     "keras_rnn/cli/extras.py",
                     "keras_rnn/training/tokenizer.py"):
        assert expected in wheel
    assert any(n.endswith(".dist-info/entry_points.txt") for n in wheel)
    assert any(n.endswith("LICENSE") for n in wheel)


def test_the_installed_wheel_imports_every_module_from_site_packages(wheel_file, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(site), str(wheel_file)], check=True, timeout=600)
    modules = sorted(module for _, module, path in module_files()
                     if path.parent.joinpath("__init__.py").exists()
                     and not module.endswith("__main__"))
    script = ("import importlib, sys\n"
              f"for name in {modules!r}:\n"
              "    module = importlib.import_module(name)\n"
              f"    assert module.__file__.startswith({str(site)!r}), (name, module.__file__)\n"
              "print(len(sys.modules))\n")
    env = dict(os.environ, PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(modules) > 60


def test_private_keras_is_used_in_one_module_only():
    users = sorted({str(path.relative_to(ROOT)) for _, module, path in module_files()
                    if any(name == "keras.src" or name.startswith("keras.src.")
                           for name in imports_of(path, module))})
    assert users == ["keras_rnn/_keras_private.py"], users


def test_no_module_of_the_packages_is_over_about_500_lines_but_the_named_ones():
    allowed = set()
    long = {str(path.relative_to(ROOT)): len(path.read_text().splitlines())
            for _, _, path in module_files()}
    over = {name: n for name, n in long.items() if n > 550 and name not in allowed}
    assert not over, over


def test_the_extras_checked_are_the_extras_setup_cfg_installs():
    import configparser
    import re

    from keras_rnn.cli.extras import EXTRAS, OPTION_EXTRAS

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    declared = {extra: {re.split(r"[<>=\[ ;]", line.strip())[0].lower()
                        for line in config["options.extras_require"][extra].splitlines()
                        if line.strip() and not line.strip().startswith("#")}
                for extra in ("training", "serving")}
    for extra, modules in EXTRAS.items():
        assert set(modules.values()) <= declared[extra], (extra, set(modules.values())
                                                          - declared[extra])
    for extra, modules in OPTION_EXTRAS.values():
        assert set(modules.values()) <= declared[extra]


def test_serve_rest_api_port_without_werkzeug_is_one_line(monkeypatch, capsys):
    import importlib.util

    from keras_rnn import cli
    from keras_rnn.cli.extras import require_options

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "werkzeug" else find_spec(name, *a))
    for name in [name for name in sys.modules if name.split(".")[0] == "werkzeug"]:
        monkeypatch.delitem(sys.modules, name)
    # Without the REST port, serve does not need Werkzeug: the check passes.
    require_options("serve", cli.build_parser().parse_args(["serve", "--model-base-dir", "/x"]))
    status = cli.main(["serve", "--model-base-dir", "/nonexistent", "--rest-api-port", "8501"])
    err = capsys.readouterr().err
    assert status == 3
    assert err == ("keras-rnn serve: needs the serving extra (pip install 'keras-rnn[serving]'): "
                   "werkzeug cannot be imported (no module named 'werkzeug')\n"), err
