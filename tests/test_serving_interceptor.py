"""What every RPC goes through (`serving/interceptor.py`): deadlines,
status codes, accounting.
"""

from tests.serving_support import (  # noqa: F401 - fixtures
    channel,
    fake_versions,
    needs_tensorflow,
    predict_request,
    rpc_code,
    server,
    stub)


@needs_tensorflow
def test_expired_deadline(server, channel):
    import grpc

    assert rpc_code(stub(channel).Predict, predict_request(["Hallo"]), timeout=0.001) == \
        grpc.StatusCode.DEADLINE_EXCEEDED
    assert stub(channel).Predict(predict_request(["Hallo"]), timeout=10).outputs
