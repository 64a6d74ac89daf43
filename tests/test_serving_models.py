"""Versions on disk (`serving/models.py`): hot reload under load, corrupt
versions.
"""

import os
import shutil
import threading
import time

from tests.serving_fakes import copy_version
from tests.serving_support import (  # noqa: F401 - fixtures
    fake_versions,
    make_base,
    needs_tensorflow,
    outputs_of,
    predict_request,
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
