"""Versions on disk (`serving/models.py`): hot reload under load, corrupt
versions.
"""

import io
import json
import logging
import os
import shutil
import threading
import time

import pytest

from tests.serving_fakes import copy_version
from tests.serving_support import (  # noqa: F401 - fixtures
    fake_versions,
    make_base,
    needs_tensorflow,
    outputs_of,
    predict_request,
    rpc_code,
    start_server,
    stub)


@needs_tensorflow
def test_hot_reload_under_load_and_a_corrupt_version(tmp_path, fake_versions):
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    base = make_base(tmp_path, fake_versions)
    server = start_server(base, poll_seconds=0.2, batch_timeout_ms=5)
    target = f"127.0.0.1:{server.port}"
    stop = threading.Event()
    errors, seen = [], []

    def client():
        with grpc.insecure_channel(target) as channel:
            while not stop.is_set():
                try:
                    response = stub(channel).Predict(predict_request(["Hallo"]), timeout=10)
                except grpc.RpcError as error:
                    errors.append((error.code(), error.details()))
                    continue
                version = response.model_spec.version.value
                text = outputs_of(response)["translations"][0, 0].decode()
                seen.append((time.monotonic(), version, text))

    def status(channel):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "fake"
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            request, timeout=10)
        return {s.version: s for s in response.model_version_status}

    def wait_for(predicate, what, timeout=20):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(seen) > 20, "first responses")
        # A version still being written (temporary name) is ignored.
        (base / "fake" / ".2.tmp-partial").mkdir()
        copy_version(fake_versions[2], base / "fake" / "2")
        switched = time.monotonic()
        wait_for(lambda: any(v == 2 for _, v, _ in seen), "version 2")
        time.sleep(0.5)
        with grpc.insecure_channel(target) as channel:
            wait_for(lambda: status(channel)[1].state ==
                     get_model_status_pb2.ModelVersionStatus.END, "version 1 unloaded")
            # A corrupt version 3 (truncated saved_model.pb) does not replace 2.
            corrupt = base / "fake" / ".3.tmp-copy"
            shutil.copytree(fake_versions[2], corrupt)
            pb = corrupt / "saved_model.pb"
            pb.write_bytes(pb.read_bytes()[:100])
            os.rename(corrupt, base / "fake" / "3")
            wait_for(lambda: 3 in status(channel) and status(channel)[3].state ==
                     get_model_status_pb2.ModelVersionStatus.END, "version 3 failed")
            version3 = status(channel)[3]
            assert version3.status.error_code != 0 and version3.status.error_message
            time.sleep(0.5)
            states = status(channel)
            assert states[2].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        server.stop(grace=1)
    assert not errors, errors[:5]
    assert {v for _, v, _ in seen} == {1, 2}
    for when, version, text in seen:
        assert text == f"v{version}:ollaH"
    # Once version 2 answered, version 1 never answered again (only
    # requests already in flight at the switch may still be version 1).
    first_v2 = min(t for t, v, _ in seen if v == 2)
    assert all(v == 2 for t, v, _ in seen if t > first_v2 + 1.0)
    assert switched <= first_v2
    assert seen[-1][1] == 2


def build_foreign_model(version_dir):
    """A SavedModel whose `serving_default` is not a translator: float `x` in,
    float `y` out."""
    import tensorflow as tf

    module = tf.Module()
    module.serve = tf.function(lambda x: {"y": 2.0 * x},
                               input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    tf.saved_model.save(module, str(version_dir), signatures={"serving_default": module.serve})
    return version_dir


def model_status(channel, name="fake"):
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        request, timeout=10)
    return {s.version: s for s in response.model_version_status}


def wait_for(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@needs_tensorflow
def test_a_version_that_breaks_the_contract_is_refused(tmp_path, fake_versions):
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2

    from keras_rnn.serving.server import setup_logging

    foreign = build_foreign_model(tmp_path / "foreign")
    base = make_base(tmp_path, fake_versions)
    stream = io.StringIO()
    setup_logging("INFO", stream)
    server = start_server(base, poll_seconds=0.1)
    try:
        copy_version(foreign, base / "fake" / "2")
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            wait_for(lambda: 2 in model_status(channel) and model_status(channel)[2].state ==
                     get_model_status_pb2.ModelVersionStatus.END, "version 2 refused")
            time.sleep(0.5)  # a few more polls: refused once, not retried
            states = model_status(channel)
            assert states[1].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
            refused = states[2].status
            assert refused.error_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
            assert "contract" in refused.error_message and "'inputs'" in \
                refused.error_message, refused.error_message
            response = stub(channel).Predict(predict_request(["Hallo"]), timeout=10)
            assert response.model_spec.version.value == 1
            assert outputs_of(response)["translations"][0, 0] == b"v1:ollaH"
    finally:
        server.stop(grace=1)
        logging.getLogger("keras_rnn.serving").handlers.clear()
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    refusals = [e for e in entries if e["event"] == "version_refused"]
    assert len(refusals) == 1 and refusals[0]["version"] == 2, refusals
    assert not [e for e in entries if e["event"] in ("version_loaded", "version_published")
                and e.get("version") == 2]


@needs_tensorflow
def test_the_contract_check_accepts_the_fake_and_names_what_is_wrong(fake_versions):
    from tensorflow.python.saved_model import loader_impl

    from keras_rnn.serving import contract

    def signatures(path):
        return dict(loader_impl.parse_saved_model(str(path)).meta_graphs[0].signature_def)

    good = signatures(fake_versions[1])
    assert contract.check_signature_defs(good) == []
    broken = {key: type(sig).FromString(sig.SerializeToString()) for key, sig in good.items()}
    broken[contract.ALIGNMENTS_SIGNATURE].outputs["scores"].dtype = contract.DT_STRING
    del broken[contract.OPTIONS_SIGNATURE].inputs["n_best"]
    problems = contract.check_signature_defs(broken)
    assert any("'scores'" in p and "float32" in p for p in problems), problems
    assert any("n_best" in p for p in problems), problems
    # serving_default takes only the sentences, or (exports from before
    # translate_with_options) all four inputs; not some of them.
    assert contract.check_signature_defs({"serving_default": good["translate_with_options"]})\
        == []
    del broken[contract.DEFAULT_SIGNATURE].inputs["inputs"]
    assert any("serving_default" in p and "no inputs 'inputs'" in p
               for p in contract.check_signature_defs(broken))
    assert contract.check_signature_defs({}) == [
        "no 'serving_default' signature (signatures: )"]


def health_status(channel):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                         timeout=10)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


@needs_tensorflow
def test_a_removed_version_is_unloaded_and_the_newest_remaining_serves(tmp_path,
                                                                       fake_versions):
    """Deleting the serving version's directory unloads it (after its
    in-flight requests) and reloads the newest remaining version first, so
    clients see no error; the deleted version is no longer reported."""
    import grpc

    base = make_base(tmp_path, fake_versions, versions=(1, 2))
    server = start_server(base, poll_seconds=0.1)
    stop, errors, seen = threading.Event(), [], []

    def client():
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            while not stop.is_set():
                try:
                    response = stub(channel).Predict(predict_request(["Hallo"]), timeout=10)
                except grpc.RpcError as error:
                    errors.append((error.code(), error.details()))
                    continue
                seen.append((response.model_spec.version.value,
                             outputs_of(response)["translations"][0, 0]))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            wait_for(lambda: len(seen) > 10, "first responses")
            assert {v for v, _ in seen} == {2}
            shutil.rmtree(base / "fake" / "2")
            wait_for(lambda: seen[-1][0] == 1, "version 1 answering")
            wait_for(lambda: sorted(model_status(channel)) == [1], "version 2 forgotten")
            count = len(seen)
            wait_for(lambda: len(seen) > count + 10, "more responses")
            assert health_status(channel) == "SERVING"
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        server.stop(grace=1)
    assert not errors, errors[:5]
    assert all(text == f"v{v}:ollaH".encode() for v, text in seen)
    first_v1 = seen.index(next(s for s in seen if s[0] == 1))
    assert all(v == 1 for v, _ in seen[first_v1 + 5:])


@needs_tensorflow
def test_a_version_that_failed_while_being_copied_loads_once_complete(tmp_path,
                                                                      fake_versions):
    """A version copied in place file by file fails to load while its
    variables are missing; it is retried when any of its files changes."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2

    base = make_base(tmp_path, fake_versions)
    server = start_server(base, poll_seconds=0.1)
    try:
        version_dir = base / "fake" / "2"
        version_dir.mkdir()
        shutil.copy2(fake_versions[2] / "saved_model.pb", version_dir / "saved_model.pb")
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            wait_for(lambda: 2 in model_status(channel) and model_status(channel)[2].state ==
                     get_model_status_pb2.ModelVersionStatus.END, "version 2 failing")
            assert model_status(channel)[2].status.error_message
            shutil.copytree(fake_versions[2], version_dir, dirs_exist_ok=True)
            wait_for(lambda: stub(channel).Predict(predict_request(["Hallo"]), timeout=10)
                     .model_spec.version.value == 2, "version 2 serving")
            assert model_status(channel)[2].state == \
                get_model_status_pb2.ModelVersionStatus.AVAILABLE
    finally:
        server.stop(grace=1)


@needs_tensorflow
def test_a_missing_base_directory_is_polled_until_a_version_appears(tmp_path, fake_versions):
    """As TensorFlow Serving: no model yet is NOT_SERVING and NOT_FOUND, a
    model folder without a complete version is not advertised, and the
    first complete version is served."""
    import grpc

    from keras_rnn.serving.server import Server, ServerConfig

    base = tmp_path / "models"
    server = Server(ServerConfig(model_base_dir=str(base), port=0, poll_seconds=0.1))
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            time.sleep(0.3)
            assert health_status(channel) == "NOT_SERVING"
            assert rpc_code(stub(channel).Predict, predict_request(["Hallo"]),
                            timeout=10) == grpc.StatusCode.NOT_FOUND
            (base / "fake" / "1").mkdir(parents=True)  # no saved_model.pb yet
            (base / "fake" / ".2.tmp-partial").mkdir()
            time.sleep(0.3)
            assert server.manager.model_names() == []
            assert health_status(channel) == "NOT_SERVING"
            assert rpc_code(stub(channel).Predict, predict_request(["Hallo"]),
                            timeout=10) == grpc.StatusCode.NOT_FOUND
            copy_version(fake_versions[2], base / "fake" / "2")
            server.wait_until_ready(timeout=30)
            assert health_status(channel) == "SERVING"
            response = stub(channel).Predict(predict_request(["Hallo"]), timeout=10)
            assert response.model_spec.version.value == 2
            assert outputs_of(response)["translations"][0, 0] == b"v2:ollaH"
    finally:
        server.stop(grace=1)


def test_release_memory_returns_freed_heap_to_the_system():
    """What an unloaded version leaves: freed `malloc` blocks that glibc
    keeps unless trimmed (the models manager trims after each unload)."""
    import ctypes
    import os

    from keras_rnn.serving.servable import release_memory

    def rss_mib():
        with open(f"/proc/{os.getpid()}/status") as status:
            return next(int(line.split()[1]) for line in status
                        if line.startswith("VmRSS:")) / 1024

    libc = ctypes.CDLL(None)
    if not hasattr(libc, "malloc_trim"):
        pytest.skip("not glibc")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    # 200 MiB in 64 KiB blocks (under glibc's mmap threshold: heap memory,
    # as a graph's many small allocations), all but the last freed: the
    # last one pins the heap's top, so glibc cannot shrink it by itself.
    blocks = [libc.malloc(64 * 1024) for _ in range(3200)]
    for block in blocks:
        ctypes.memset(block, 1, 64 * 1024)
    for block in blocks[:-1]:
        libc.free(block)
    before = rss_mib()
    assert release_memory() is True
    after = rss_mib()
    libc.free(blocks[-1])
    assert before - after > 150, (before, after)


def test_an_empty_base_directory_is_said_once_and_in_the_not_found_status(tmp_path):
    """An empty model volume (Kubernetes: nothing copied in) is one WARNING
    line, not silence and not one line every poll, and NOT_FOUND says no
    model is there."""
    from keras_rnn.serving.models import ModelManager, ModelNotFoundError

    base = tmp_path / "models"
    (base / "quick" / "1").mkdir(parents=True)  # no saved_model.pb: not a model yet
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("keras_rnn.serving")
    logger.addHandler(handler)
    try:
        manager = ModelManager({}, base_dir=base, load=None)
        for _ in range(3):
            assert not manager.poll()
    finally:
        logger.removeHandler(handler)
    [record] = [r for r in records if r.fields["event"] == "base_dir_empty"]
    assert record.levelno == logging.WARNING
    assert "no model in the model base directory" in record.getMessage()
    assert record.fields["path"] == str(base) and record.fields["entries"] == ["quick"]
    assert not manager.ready()
    for name in ("quick", ""):
        with pytest.raises(ModelNotFoundError, match="no model found in the model base"):
            manager.status(name)
