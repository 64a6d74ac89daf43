"""The serving contract of an exported translator, in one place.

What `keras-rnn export` writes and what the server, the model manager, the
batcher and the client rely on: signature keys, input and output names with
their dtypes and ranks, the padded output axes, the scalar input ranges and
the files under `assets.extra/`. This module imports nothing, so every side
(export, server, client, tests) can share it.

    serving_default            inputs: inputs  string (batch,)
                               outputs: translations string (batch, n_best)
                                        scores float32 (batch, n_best)
                                        lengths int32 (batch, n_best)
    translate_with_options     inputs: inputs  string (batch,)
                                       beam_size, max_length, n_best  int32 ()
                               outputs: as serving_default
    translate_with_alignments  inputs: as translate_with_options
                               outputs: as serving_default, plus
                                        alignments float32 (batch, n_best, T, S)
                                        source_pieces string (batch, S)
                                        target_pieces string (batch, n_best, T)

`serving_default` has one input, so that stock TensorFlow Serving, which
wants every input of a signature in each request, translates
`{"instances": ["Hallo"]}`: its decoding settings are the export's
(`beam_size`, `max_length` of keras_rnn.json, `n_best` 1). Exports made
before `translate_with_options` existed have the four inputs of
`translate_with_options` on `serving_default` (`LEGACY_DEFAULT_INPUTS`);
they keep the contract.

`check_signature_defs` says whether a SavedModel's SignatureDefs keep this
contract; the model manager refuses a version that does not.
"""

# Signature keys.
DEFAULT_SIGNATURE = "serving_default"
OPTIONS_SIGNATURE = "translate_with_options"
ALIGNMENTS_SIGNATURE = "translate_with_alignments"

# Input names.
SENTENCES_INPUT = "inputs"
BEAM_SIZE = "beam_size"
MAX_LENGTH = "max_length"
N_BEST = "n_best"
SCALAR_INPUTS = (BEAM_SIZE, MAX_LENGTH, N_BEST)

# Output names.
TRANSLATIONS = "translations"
SCORES = "scores"
LENGTHS = "lengths"
ALIGNMENTS = "alignments"
SOURCE_PIECES = "source_pieces"
TARGET_PIECES = "target_pieces"

# TensorFlow DataType enum values (tensorflow/core/framework/types.proto).
DT_FLOAT, DT_INT32, DT_STRING = 1, 3, 7
DTYPE_NAMES = {DT_FLOAT: "float32", DT_INT32: "int32", DT_STRING: "string"}

# name -> (dtype, rank); the batch axis is 0 and of unknown size.
DEFAULT_INPUTS = {SENTENCES_INPUT: (DT_STRING, 1)}
INPUTS = {**DEFAULT_INPUTS, BEAM_SIZE: (DT_INT32, 0), MAX_LENGTH: (DT_INT32, 0),
          N_BEST: (DT_INT32, 0)}
LEGACY_DEFAULT_INPUTS = INPUTS  # serving_default of exports before translate_with_options
OUTPUTS = {TRANSLATIONS: (DT_STRING, 2), SCORES: (DT_FLOAT, 2), LENGTHS: (DT_INT32, 2)}
ALIGNMENT_OUTPUTS = {**OUTPUTS, ALIGNMENTS: (DT_FLOAT, 4), SOURCE_PIECES: (DT_STRING, 2),
                     TARGET_PIECES: (DT_STRING, 3)}
SIGNATURES = {DEFAULT_SIGNATURE: (DEFAULT_INPUTS, OUTPUTS),
              OPTIONS_SIGNATURE: (INPUTS, OUTPUTS),
              ALIGNMENTS_SIGNATURE: (INPUTS, ALIGNMENT_OUTPUTS)}
REQUIRED_SIGNATURES = (DEFAULT_SIGNATURE,)

# Output name -> {axis: extent}: outputs padded with "" / 0 to the longest
# row of a batch. The extent of a set of rows is the length of its longest
# non-padding row in the pieces output named in EXTENTS.
PADDED_AXES = {
    SOURCE_PIECES: {1: "source"},
    TARGET_PIECES: {2: "target"},
    ALIGNMENTS: {2: "target", 3: "source"},
}
EXTENTS = {"source": (SOURCE_PIECES, 1), "target": (TARGET_PIECES, 2)}

# Scalar inputs checked against keras_rnn.json (the graph checks them too):
# name -> (low, metadata key of the high bound or another input's name).
SCALAR_RANGES = {BEAM_SIZE: (1, "max_beam_size"), N_BEST: (1, BEAM_SIZE),
                 MAX_LENGTH: (1, "max_length_limit")}
# Fallback defaults of scalar inputs when a SignatureDef has no `defaults`
# map: input name -> key of keras_rnn.json (or a constant).
METADATA_DEFAULTS = {BEAM_SIZE: "beam_size", MAX_LENGTH: "max_length", N_BEST: 1}

# Files of a version directory, relative to it.
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = f"{ASSETS_EXTRA}/tf_serving_warmup_requests"  # TensorFlow Serving's warm-up
METADATA_FILE = f"{ASSETS_EXTRA}/keras_rnn.json"  # the export's limits and provenance


def _describe(dtype, rank):
    return f"{DTYPE_NAMES.get(dtype, f'dtype enum {dtype}')} rank {rank}"


def _check_tensors(where, kind, actual, expected):
    problems = []
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    if missing:
        problems.append(f"{where} has no {kind} {', '.join(map(repr, missing))}")
    if extra:
        problems.append(f"{where} has unexpected {kind} {', '.join(map(repr, extra))}")
    for name in sorted(set(expected) & set(actual)):
        info = actual[name]
        rank = None if info.tensor_shape.unknown_rank else len(info.tensor_shape.dim)
        if (info.dtype, rank) != expected[name]:
            got = _describe(info.dtype, "unknown" if rank is None else rank)
            problems.append(f"{where} {kind[:-1]} {name!r} is {got}; "
                            f"the contract says {_describe(*expected[name])}")
    return problems


def check_signature_defs(signature_defs):
    """The ways a SavedModel's SignatureDefs break the contract.

    Args:
        signature_defs: dict of signature key -> `SignatureDef` proto.

    Returns:
        A list of one-line problems; empty when the contract is kept.
        Signatures the contract does not name are allowed.
    """
    problems = [f"no {key!r} signature (signatures: {', '.join(sorted(signature_defs))})"
                for key in REQUIRED_SIGNATURES if key not in signature_defs]
    for key, (inputs, outputs) in SIGNATURES.items():
        if key in signature_defs:
            signature = signature_defs[key]
            where = f"signature {key!r}"
            if key == DEFAULT_SIGNATURE and set(signature.inputs) == set(LEGACY_DEFAULT_INPUTS):
                inputs = LEGACY_DEFAULT_INPUTS  # an export from before translate_with_options
            problems += _check_tensors(where, "inputs", signature.inputs, inputs)
            problems += _check_tensors(where, "outputs", signature.outputs, outputs)
    return problems
