"""The TF Addons NMT-with-attention tutorial, ported by changing its import
(`examples/tfa_nmt_attention.py`), trains and beam-decodes end to end."""

import ast
from pathlib import Path

from examples import tfa_nmt_attention

EXAMPLE = Path(tfa_nmt_attention.__file__)


def test_the_tutorial_trains_and_decodes_greedy_and_beam():
    result = tfa_nmt_attention.main(["--epochs", "6", "--units", "16",
                                     "--embedding-dim", "8"])
    losses = result["losses"]
    assert losses[-1] < losses[0], losses
    (greedy,) = result["greedy"]
    assert greedy.split()  # some words
    (beams,) = result["beams"]
    assert len(beams) == 3 and all(b.split()[-1] == "<end>" for b in beams)


def test_the_only_tf_addons_import_is_replaced_by_keras_rnn():
    tree = ast.parse(EXAMPLE.read_text())
    imported = {alias.name: alias.asname for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    assert imported.get("keras_rnn") == "tfa"
    assert "tensorflow_addons" not in imported and "tensorflow" not in imported
