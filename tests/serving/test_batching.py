"""Dynamic batching (`serving/batching.py`): the batcher alone, and merged
requests over a real port equal to unbatched ones.
"""

import random
import threading

import numpy as np
import pytest

from tests.serving_fakes import reversing_model
from tests.serving_support import (  # noqa: F401 - fixtures
    ALIGNMENTS,
    assert_outputs_equal,
    expected,
    fake_versions,
    in_process,
    make_base,
    needs_tensorflow,
    OPTIONS,
    outputs_of,
    predict_request,
    rpc_code,
    SENTENCES,
    server,
    SIGNATURE,
    start_server,
    stub)


@needs_tensorflow
def test_concurrent_requests_are_batched_and_equal_unbatched(server, in_process):
    import grpc

    from keras_rnn.serving.client import TranslatorClient

    registry = server.metrics.registry

    def batch_counts():
        return (registry.get_sample_value("keras_rnn_batch_size_bucket",
                                          {"model": "fake", "le": "1.0"}) or 0,
                registry.get_sample_value("keras_rnn_batch_size_count", {"model": "fake"}) or 0)

    ones_before, count_before = batch_counts()
    rng = random.Random(0)
    jobs = []
    for i in range(200):
        sentences = rng.sample(SENTENCES, rng.randint(1, 3))
        scalars = rng.choice([{}, {"beam_size": 3, "n_best": 2}])
        jobs.append((i % 4 == 0, sentences, scalars))
    results = [None] * len(jobs)
    errors = []
    lock = threading.Lock()
    cursor = iter(range(len(jobs)))

    def worker():
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel, \
                TranslatorClient(f"127.0.0.1:{server.port}", timeout=30) as client:
            while True:
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                typed, sentences, scalars = jobs[index]
                try:
                    if typed:
                        response = client.translate(sentences, **scalars)
                        results[index] = [[h.text.encode() for h in t.hypotheses]
                                          for t in response.translations]
                    else:
                        results[index] = outputs_of(stub(channel).Predict(
                            predict_request(sentences, signature=OPTIONS if scalars
                                            else SIGNATURE, **scalars), timeout=30))
                except grpc.RpcError as error:
                    errors.append((index, error.code(), error.details()))

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    for (typed, sentences, scalars), result in zip(jobs, results):
        wanted = expected(in_process, sentences, OPTIONS if scalars else SIGNATURE,
                          **{k: np.int32(v) for k, v in scalars.items()})
        if typed:
            assert result == [list(row) for row in wanted["translations"]]
        else:
            assert_outputs_equal(result, wanted)
    ones, count = batch_counts()
    assert count > count_before
    assert count - count_before > ones - ones_before, "no batch merged two requests"
    assert registry.get_sample_value("keras_rnn_requests_total", {
        "method": "Predict", "model": "fake", "code": "OK"}) >= 150


@needs_tensorflow
def test_no_batching_gives_the_same_results(tmp_path, fake_versions, in_process):
    from keras_rnn.serving.client import TranslatorClient

    server = start_server(make_base(tmp_path, fake_versions), batching=False)
    try:
        assert all(s.batcher is None for s in server.manager._served["fake"].values())
        with TranslatorClient(f"127.0.0.1:{server.port}", timeout=10) as client:
            outputs = client.predict(SENTENCES, signature=ALIGNMENTS, beam_size=2, n_best=2)
        assert outputs.pop("version") == 1
        assert_outputs_equal(outputs, expected(in_process, SENTENCES, ALIGNMENTS,
                                               beam_size=np.int32(2), n_best=np.int32(2)))
    finally:
        server.stop(grace=1)


def test_batcher_splits_merges_and_trims():
    """Unit test of the batcher with a NumPy 'model' (no TensorFlow)."""
    from keras_rnn.serving.batching import Batcher, BatchingOptions, QueueFullError

    calls = []

    def run(key, sentences):
        calls.append(len(sentences))
        return reversing_model(sentences)

    batcher = Batcher(run, BatchingOptions(max_batch_size=4, batch_timeout_ms=50,
                                           max_enqueued_batches=3, max_queued_sentences=10))
    try:
        first = batcher.submit("k", [b"abc", b"d"])
        second = batcher.submit("k", [b"efghij", b"k", b"lm"])  # splits across 2 batches
        other = batcher.submit("other", [b"xy"])
        out = second.result(5)
        assert list(out["translations"]) == [b"jihgfe", b"k", b"ml"]
        assert out["source_pieces"].shape == (3, 7)
        out = first.result(5)
        assert list(out["translations"]) == [b"cba", b"d"]
        assert out["source_pieces"].shape == (2, 4)  # trimmed to its own longest
        assert list(other.result(5)["translations"]) == [b"yx"]
        assert sorted(calls) == [1, 1, 4]
        with pytest.raises(QueueFullError, match="max_queued_sentences"):
            batcher.submit("k", [b"a"] * 11)
    finally:
        batcher.stop()


@needs_tensorflow
def test_a_bad_sentence_does_not_fail_the_requests_batched_with_it(server):
    """The graph rejects a too-long sentence only when its batch runs; the
    batcher reruns the batch's requests alone so only that one fails."""
    import grpc

    service_target = f"127.0.0.1:{server.port}"
    results = {}

    def send(name, sentences):
        with grpc.insecure_channel(service_target) as channel:
            results[name] = rpc_code(stub(channel).Predict, predict_request(sentences),
                                     timeout=10)

    threads = [threading.Thread(target=send, args=(f"good{i}", ["Hallo"])) for i in range(4)]
    threads.append(threading.Thread(target=send, args=("bad", ["z" * 41])))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results.pop("bad") == grpc.StatusCode.INVALID_ARGUMENT
    assert set(results.values()) == {grpc.StatusCode.OK}
