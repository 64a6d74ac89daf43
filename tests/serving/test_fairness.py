"""Fair under pressure: a request's cost and response size are checked
before it runs, and a large request runs in chunks interleaved with other
requests, so a small request waits about one chunk, not the whole request.

The server runs the fake translator (`tests/serving_fakes.py`) with its
`predict` wrapped to sleep in proportion to the work asked for (sentences x
beam_size x max_length) and to count its calls.
"""

import gc
import statistics
import threading
import time

import numpy as np
import pytest

from tests.serving_fakes import reversing_model
from tests.serving_support import (  # noqa: F401 - fixtures
    ALIGNMENTS, OPTIONS, assert_outputs_equal, expected, fake_versions, free_port, in_process,
    make_base, needs_tensorflow, outputs_of, predict_request, rpc_details, start_server, stub)

SECONDS_PER_STEP = 0.00025  # fake compute: 1 sentence x beam 4 x max_length 50 = 50 ms
SMALL = {"beam_size": 4, "max_length": 50}  # one sentence: 200 steps
LARGE = {"beam_size": 4, "max_length": 50, "n_best": 4}  # 15 sentences: 3,000 steps
LARGE_SENTENCES = [f"Satz {i}: " + "lang " * (i % 7) for i in range(15)]


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory, fake_versions):
    """A batching server whose model computes SECONDS_PER_STEP per decoder
    step; `server.calls` lists the steps of each model call."""
    base = make_base(tmp_path_factory.mktemp("fair"), fake_versions)
    server = start_server(base, batch_timeout_ms=1, max_batch_size=16,
                          max_request_sentences=16, max_sentence_chars=200,
                          max_request_cost=3000, max_chunk_cost=200,
                          max_message_bytes=300_000, rest_api_port=free_port())
    server.calls = []
    with server.manager.acquire("fake") as servable:
        real = servable.predict

        def slow_predict(signature, inputs):
            steps = (len(inputs["inputs"]) * int(inputs.get("beam_size", 2))
                     * int(inputs.get("max_length", 20)))
            server.calls.append(steps)
            time.sleep(steps * SECONDS_PER_STEP)
            return real(signature, inputs)

        servable.predict = slow_predict
    yield server
    server.stop(grace=1)


def _latency(server, sentences, **scalars):
    import grpc

    request = predict_request(sentences, signature=OPTIONS, **scalars)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        start = time.perf_counter()
        response = stub(channel).Predict(request, timeout=30)
        return time.perf_counter() - start, response


@needs_tensorflow
def test_a_small_request_waits_about_one_chunk_behind_a_maximal_one(slow_server, in_process):
    """The small request's latency while a maximal request runs is at most
    about twice its latency alone (before chunking: the rest of the
    maximal request, up to 16x); the maximal request's answer is the unsplit one."""
    gc.collect()  # not during the measurements (the models loaded in this process)
    alone = statistics.median(_latency(slow_server, ["Hallo"], **SMALL)[0] for _ in range(3))
    loaded, answers = [], []
    for delay in (0.1, 0.25, 0.4):
        thread = threading.Thread(target=lambda: answers.append(
            _latency(slow_server, LARGE_SENTENCES, **LARGE)[1]))
        thread.start()
        time.sleep(delay)  # the maximal request is running
        loaded.append(_latency(slow_server, ["Hallo"], **SMALL)[0])
        thread.join(30)
    ratio = statistics.median(loaded) / alone
    assert ratio <= 2.5, (f"alone {1000 * alone:.0f} ms, while a maximal request runs "
                          f"{[round(1000 * s) for s in loaded]} ms")
    wanted = expected(in_process, LARGE_SENTENCES, OPTIONS,
                      **{k: np.int32(v) for k, v in LARGE.items()})
    for response in answers:
        assert_outputs_equal(outputs_of(response), wanted)


@needs_tensorflow
def test_costly_or_too_large_requests_are_refused_before_compute(slow_server):
    import grpc

    from tests.serving.test_rest import http

    def predict(sentences, **scalars):
        with grpc.insecure_channel(f"127.0.0.1:{slow_server.port}") as channel:
            return rpc_details(stub(channel).Predict, predict_request(sentences, **scalars),
                               timeout=30)

    calls = len(slow_server.calls)
    costly = LARGE_SENTENCES + ["Hallo"]  # 16 x beam 4 x max_length 50: 3,200 steps
    code, details = predict(costly, signature=OPTIONS, **SMALL)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "3200 decoder steps" in details and "3000 (max_request_cost)" in details, details
    longest = ["z" * 40] * 15  # 15 x n_best 4 x 51 x 41 alignment floats: 501,840 bytes
    code, details = predict(longest, signature=ALIGNMENTS, beam_size=4, n_best=4,
                            max_length=50)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "300000 (max_message_bytes)" in details, details
    status, body = http(slow_server, "POST", "/v1/models/fake:predict", {
        "signature_name": OPTIONS, "inputs": {"inputs": costly, **SMALL}})
    assert status == 400 and "max_request_cost" in body["error"], body
    status, body = http(slow_server, "POST", "/v1/models/fake:predict", {
        "signature_name": ALIGNMENTS,
        "inputs": {"inputs": longest, "beam_size": 4, "n_best": 4, "max_length": 50}})
    assert status == 429 and "max_message_bytes" in body["error"], body
    from keras_rnn.serving import translator_pb2, translator_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{slow_server.port}") as channel:
        code, details = rpc_details(
            translator_pb2_grpc.TranslatorStub(channel).Translate,
            translator_pb2.TranslateRequest(model_name="fake", sentences=longest, beam_size=4,
                                            n_best=4, max_length=50, alignments=True),
            timeout=30)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_message_bytes" in details
    assert len(slow_server.calls) == calls  # the model never ran


def test_chunks_run_one_at_a_time_and_reassemble_in_order():
    """Unit test of the batcher's chunks with a NumPy 'model'."""
    from keras_rnn.serving.batching import Batcher, BatchingOptions

    calls = []

    def run(key, sentences):
        calls.append([len(s) for s in sentences])
        return reversing_model(sentences)

    batcher = Batcher(run, BatchingOptions(max_batch_size=4, batch_timeout_ms=1))
    try:
        sentences = [b"abcdef", b"a", b"abc", b"ab", b"abcde", b"abcd", b"xyz"]
        out = batcher.submit("k", sentences, chunk_size=2).result(5)
        assert list(out["translations"]) == [s[::-1] for s in sentences]
        wanted = run("k", sentences)["source_pieces"]
        np.testing.assert_array_equal(out["source_pieces"], wanted)
        assert calls[:-1] == [[1, 2], [3, 3], [4, 5], [6]]  # chunks sorted by length
        assert batcher.queued_sentences == 0
    finally:
        batcher.stop()
