"""`torchship serve` against Triton's own Python clients (tritonclient[grpc] and [http] from PyPI)
over real loopback sockets: KServe v2 over gRPC beside HTTP (health, metadata, JSON / binary /
raw gRPC inference, typed gRPC contents, 64 requests in flight), one error semantics for both
protocols (gRPC codes matching HTTP statuses, same messages), and model repository control:
explicit load / unload with requests in flight finishing, polling that picks up a new version,
reloads a changed one and keeps serving through a corrupt one."""

import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest

from conftest import fashion_reference
from harness.kserve_client import Client
from harness.server_process import Server, free_port, make_repository, metric, wait_for

grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] from PyPI")
httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] from PyPI")
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402
import grpc  # noqa: E402

FASHION_CONFIG = {"max_batch_size": 64, "max_queue_delay_us": 5000}
# One request waits this long in the queue for company: long enough to unload its version, or
# stop the server, while it is in flight.
SLOW_CONFIG = {"max_batch_size": 64, "max_queue_delay_us": 2_000_000}
# Logits of the same images through different batch sizes differ by summation order only.
TOLERANCE = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def reference(models):
    return fashion_reference(models)


@pytest.fixture(scope="module")
def server(cli, models, fixtures, tmp_path_factory):
    repository = make_repository(str(tmp_path_factory.mktemp("repository")), {
        "fashion": (os.path.join(models, "fashion_mnist.pt"), FASHION_CONFIG),
        "generic": (os.path.join(fixtures, "generic.pt"), None),
    })
    running = Server(cli, repository, "--grpc-port", "0", "--threads", "2")
    assert running.grpc_port, running.log
    yield running
    assert running.terminate() == 0


def grpc_client(server):
    return grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")


def grpc_input(images, name="images"):
    tensor = grpcclient.InferInput(name, list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    return tensor


def grpc_failure(call):
    """(code name, message) of a gRPC call that must fail."""
    with pytest.raises(InferenceServerException) as failure:
        call()
    return failure.value.status(), failure.value.message()


def http_failure(response):
    return response.status, response.json()["error"]


def test_health_and_metadata_agree_over_grpc_and_http(server):
    client = grpc_client(server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("fashion") and client.is_model_ready("fashion", "1")
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "torchship"
    assert {"binary_tensor_data", "model_repository"} <= set(metadata["extensions"])
    over_grpc = client.get_model_metadata("fashion", as_json=True)
    over_http = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}").get_model_metadata(
        "fashion")
    for tensor in over_grpc["inputs"] + over_grpc["outputs"]:
        tensor["shape"] = [int(size) for size in tensor["shape"]]  # int64 travels as JSON text
    assert over_grpc == over_http == {
        "name": "fashion", "versions": ["1"], "platform": "pytorch_libtorch",
        "inputs": [{"name": "images", "datatype": "UINT8", "shape": [-1, 28, 28, 1]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]}


def test_grpc_raw_http_binary_and_json_give_pythons_logits(server, reference):
    images, logits = reference
    over_grpc = grpc_client(server).infer("fashion", [grpc_input(images[:3])], request_id="g-1")
    assert over_grpc.get_response().id == "g-1"
    assert over_grpc.get_response().model_version == "1"
    np.testing.assert_allclose(over_grpc.as_numpy("logits"), logits[:3], **TOLERANCE)

    http = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    for binary in (True, False):
        tensor = httpclient.InferInput("images", [3, 28, 28, 1], "UINT8")
        tensor.set_data_from_numpy(images[:3], binary_data=binary)
        wanted = [httpclient.InferRequestedOutput("logits", binary_data=binary)]
        answer = http.infer("fashion", [tensor], outputs=wanted)
        np.testing.assert_allclose(answer.as_numpy("logits"), logits[:3], **TOLERANCE)

    # Typed contents (uint_contents) instead of raw bytes: the same answer, raw.
    stub = service_pb2_grpc.GRPCInferenceServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    request = service_pb2.ModelInferRequest(model_name="fashion")
    tensor = request.inputs.add(name="images", datatype="UINT8", shape=[2, 28, 28, 1])
    tensor.contents.uint_contents.extend(images[:2].flatten().tolist())
    request.outputs.add(name="logits")
    response = stub.ModelInfer(request)
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("logits", "FP32", [2, 10])]
    typed = np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(2, 10)
    np.testing.assert_allclose(typed, logits[:2], **TOLERANCE)


def test_64_requests_in_flight_over_grpc_and_http_share_one_batcher(server, reference):
    images, logits = reference
    before = Client("127.0.0.1", server.port).get("/metrics").body.decode()
    answers, errors, done = {}, [], threading.Semaphore(0)

    def on_grpc_answer(index, result, error):
        if error is not None:
            errors.append(error)
        else:
            answers[("grpc", index)] = result.as_numpy("logits")
        done.release()

    client = grpc_client(server)
    for index in range(64):
        client.async_infer("fashion", [grpc_input(images[index:index + 1])],
                           callback=lambda result, error, i=index: on_grpc_answer(i, result, error))
    http = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}", concurrency=64)
    pending = []
    for index in range(64):
        tensor = httpclient.InferInput("images", [1, 28, 28, 1], "UINT8")
        tensor.set_data_from_numpy(images[index:index + 1], binary_data=True)
        pending.append((index, http.async_infer("fashion", [tensor])))
    for index, request in pending:
        answers[("http", index)] = request.get_result().as_numpy("logits")
    for _ in range(64):
        assert done.acquire(timeout=60)
    assert errors == []
    assert len(answers) == 128
    for (protocol, index), got in answers.items():
        np.testing.assert_allclose(got, logits[index:index + 1], **TOLERANCE)
    after = Client("127.0.0.1", server.port).get("/metrics").body.decode()

    def delta(name):
        return metric(after, name) - metric(before, name)
    assert delta('torchship_requests_total{model="fashion",version="1",protocol="grpc",'
                 'status="200"}') == 64
    assert delta('torchship_requests_total{model="fashion",version="1",protocol="http",'
                 'status="200"}') == 64
    assert delta('torchship_inferences_total{model="fashion",version="1"}') == 128


def test_errors_have_the_same_message_and_matching_codes(server, reference):
    images, _ = reference
    http = Client("127.0.0.1", server.port)
    client = grpc_client(server)

    unknown = http.infer("nope", {"images": images[:1]}, binary_inputs=True)
    assert http_failure(unknown) == (404, "unknown model 'nope'")
    assert grpc_failure(lambda: client.infer("nope", [grpc_input(images[:1])])) == (
        "StatusCode.NOT_FOUND", "unknown model 'nope'")

    flat = images[:1].reshape(1, 28, 28)  # rank 3 where the model takes rank 4
    status, message = http_failure(http.infer("fashion", {"images": flat}, binary_inputs=True))
    assert status == 400 and "images" in message
    assert grpc_failure(lambda: client.infer("fashion", [grpc_input(flat)])) == (
        "StatusCode.INVALID_ARGUMENT", message)

    floats = images[:1].astype(np.float32)
    status, message = http_failure(http.infer("fashion", {"images": floats}, binary_inputs=True))
    assert status == 400 and "FP32" in message
    tensor = grpcclient.InferInput("images", [1, 28, 28, 1], "FP32")
    tensor.set_data_from_numpy(floats)
    assert grpc_failure(lambda: client.infer("fashion", [tensor])) == (
        "StatusCode.INVALID_ARGUMENT", message)

    status, message = http_failure(http.infer("fashion", {"images": images[:1]},
                                              binary_inputs=True, outputs=["probabilities"]))
    assert (status, message) == (
        400, "unknown output 'probabilities' (the model returns: logits)")
    wanted = [grpcclient.InferRequestedOutput("probabilities")]
    assert grpc_failure(lambda: client.infer("fashion", [grpc_input(images[:1])],
                                             outputs=wanted)) == (
        "StatusCode.INVALID_ARGUMENT", message)

    # Raw contents that do not match the shape: refused before anything is allocated.
    stub = service_pb2_grpc.GRPCInferenceServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    request = service_pb2.ModelInferRequest(model_name="fashion")
    request.inputs.add(name="images", datatype="UINT8", shape=[1 << 20, 28, 28, 1])
    request.raw_input_contents.append(b"\0" * 10)
    with pytest.raises(grpc.RpcError) as failure:
        stub.ModelInfer(request)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.value.details() == (
        "input 'images': raw_input_contents[0] has 10 bytes, but UINT8 [1048576, 28, 28, 1] "
        "takes 822083584")
    request = service_pb2.ModelInferRequest(model_name="fashion")
    request.inputs.add(name="images", datatype="UINT8", shape=[1, 28, 28, 1])
    with pytest.raises(grpc.RpcError) as failure:
        stub.ModelInfer(request)
    assert (failure.value.code(), failure.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'images': shape [1, 28, 28, 1] needs 784 values, contents.uint_contents has 0")

    # Repository control in mode none: refused the same way over both.
    refused = http.request("POST", "/v2/repository/models/fashion/load", b"{}")
    status, message = http_failure(refused)
    assert status == 409 and "--model-control-mode explicit" in message
    assert grpc_failure(lambda: client.load_model("fashion")) == (
        "StatusCode.FAILED_PRECONDITION", message)

    text = http.get("/metrics").body.decode()
    assert metric(text, 'torchship_requests_total{model="",version="",protocol="grpc",'
                        'status="404"}') >= 1
    assert metric(text, 'torchship_requests_total{model="fashion",version="1",protocol="grpc",'
                        'status="400"}') >= 3


def test_api_key_and_body_limit_over_grpc(cli, models, tmp_path):
    repository = make_repository(str(tmp_path / "repository"), {
        "fashion": (os.path.join(models, "fashion_mnist.pt"), FASHION_CONFIG)})
    server = Server(cli, repository, "--grpc-port", "0", "--api-key", "s3cret",
                    "--max-body-bytes", "100000")
    try:
        client = grpc_client(server)
        assert client.is_server_live() and client.is_server_ready()  # health needs no key
        images = np.zeros([1, 28, 28, 1], dtype=np.uint8)
        assert grpc_failure(lambda: client.infer("fashion", [grpc_input(images)])) == (
            "StatusCode.UNAUTHENTICATED",
            "missing or wrong API key (expected the metadata authorization: Bearer <key>)")
        assert grpc_failure(lambda: client.infer("fashion", [grpc_input(images)],
                                                 headers={"authorization": "Bearer wrong"}))[0] \
            == "StatusCode.UNAUTHENTICATED"
        key = {"authorization": "Bearer s3cret"}
        assert client.infer("fashion", [grpc_input(images)], headers=key).as_numpy(
            "logits").shape == (1, 10)
        http = Client("127.0.0.1", server.port)
        assert http.infer("fashion", {"images": images}, binary_inputs=True).status == 401

        large = np.zeros([200, 28, 28, 1], dtype=np.uint8)  # 156 800 bytes > 100 000
        status, _ = grpc_failure(lambda: client.infer("fashion", [grpc_input(large)],
                                                      headers=key))
        assert status == "StatusCode.RESOURCE_EXHAUSTED"
        assert http.infer("fashion", {"images": large}, binary_inputs=True,
                          headers={"Authorization": "Bearer s3cret"}).status == 413
    finally:
        assert server.terminate() == 0


def index_of(client):
    """The repository index as {(name, version): (state, reason)}, over either protocol."""
    if isinstance(client, grpcclient.InferenceServerClient):
        models = client.get_model_repository_index(as_json=True).get("models", [])
    else:
        models = client.get_model_repository_index()
    return {(m["name"], m.get("version", "")): (m.get("state", ""), m.get("reason", ""))
            for m in models}


def test_explicit_control_loads_and_unloads_and_lets_requests_in_flight_finish(
        cli, models, fixtures, tmp_path, reference):
    images, logits = reference
    repository = make_repository(str(tmp_path / "repository"), {
        "fashion": (os.path.join(models, "fashion_mnist.pt"), SLOW_CONFIG),
        "generic": (os.path.join(fixtures, "generic.pt"), None),
    })
    server = Server(cli, repository, "--grpc-port", "0", "--model-control-mode", "explicit",
                    "--load-model", "fashion")
    try:
        http = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
        client = grpc_client(server)
        assert index_of(http) == {("fashion", "1"): ("READY", ""), ("generic", ""): ("", "")}
        assert not client.is_model_ready("generic")
        status, message = grpc_failure(lambda: client.get_model_metadata("generic"))
        assert (status, message) == (
            "StatusCode.NOT_FOUND",
            "model 'generic' is not loaded (POST /v2/repository/models/generic/load loads it)")

        client.load_model("generic")  # over gRPC
        assert client.is_model_ready("generic")
        assert index_of(http)[("generic", "1")] == ("READY", "")

        # A request waiting in fashion's queue when fashion is unloaded still gets its answer.
        answers = []
        client.async_infer("fashion", [grpc_input(images[:1])],
                           callback=lambda result, error: answers.append((result, error)))
        time.sleep(0.5)
        http.unload_model("fashion")  # over HTTP
        assert index_of(http)[("fashion", "")] == ("UNAVAILABLE", "unloaded")
        status, _ = grpc_failure(lambda: client.infer("fashion", [grpc_input(images[:1])]))
        assert status == "StatusCode.NOT_FOUND"
        deadline = time.time() + 30
        while not answers and time.time() < deadline:
            time.sleep(0.05)
        result, error = answers[0]
        assert error is None, error
        np.testing.assert_allclose(result.as_numpy("logits"), logits[:1], **TOLERANCE)

        http.load_model("fashion")
        assert http.is_model_ready("fashion")

        # A corrupt new version: each load request tries it and says why; version 1 serves on.
        os.makedirs(os.path.join(repository, "fashion", "2"))
        with open(os.path.join(repository, "fashion", "2", "model.pt"), "wb") as f:
            f.write(b"not an archive")
        for _ in range(2):
            with pytest.raises(InferenceServerException) as failure:
                http.load_model("fashion")
            assert failure.value.message().startswith("model 'fashion' version 2: ")
        assert index_of(http)[("fashion", "2")][0] == "UNAVAILABLE"
        answer = client.infer("fashion", [grpc_input(images[:1])])
        assert answer.get_response().model_version == "1"
        with pytest.raises(InferenceServerException) as failure:
            http.load_model("nothing")
        assert "the repository has no model 'nothing'" in failure.value.message()
        assert grpc_failure(lambda: client.load_model("nothing"))[0] == "StatusCode.NOT_FOUND"
        wait_for(lambda: any("unloaded fashion v1 (requests in flight finish on it)" in line
                             for line in server.log), "the unload in the server's log")
    finally:
        assert server.terminate() == 0


def drop_version(repository, version, archive):
    """Copies an archive in as a new version the way an operator should: written beside, then
    renamed into place in one step."""
    staging = os.path.join(repository, f".staging-{version}")
    os.makedirs(staging)
    shutil.copy(archive, os.path.join(staging, "model.pt"))
    os.rename(staging, os.path.join(repository, "fashion", version))


def test_polling_picks_up_versions_and_survives_a_corrupt_one(cli, models, tmp_path, reference):
    images, logits = reference
    archive = os.path.join(models, "fashion_mnist.pt")
    repository = make_repository(str(tmp_path / "repository"), {
        "fashion": (archive, FASHION_CONFIG)})
    server = Server(cli, repository, "--grpc-port", "0", "--model-control-mode", "poll",
                    "--repository-poll-secs", "1")
    try:
        client = grpc_client(server)
        http = Client("127.0.0.1", server.port)

        def served_version():
            answer = client.infer("fashion", [grpc_input(images[:2])])
            np.testing.assert_allclose(answer.as_numpy("logits"), logits[:2], **TOLERANCE)
            return answer.get_response().model_version

        assert served_version() == "1"
        drop_version(repository, "2", archive)
        wait_for(lambda: client.is_model_ready("fashion", "2"), "version 2 loaded")
        assert served_version() == "2"  # no version asked: the highest ready one

        # A corrupt version 3: reported, never serving, and not retried while unchanged.
        os.makedirs(os.path.join(repository, "fashion", "3"))
        with open(os.path.join(repository, "fashion", "3", "model.pt"), "wb") as f:
            f.write(b"this is not a TorchScript archive")
        state = wait_for(lambda: index_of(client).get(("fashion", "3")), "version 3 reported")
        assert state[0] == "UNAVAILABLE" and state[1], state
        assert served_version() == "2"
        time.sleep(2.5)
        text = http.get("/metrics").body.decode()
        assert metric(text, 'torchship_model_load_failures_total{model="fashion",version="3"}') \
            == 1
        assert metric(text, 'torchship_model_ready{model="fashion",version="2"}') == 1
        wait_for(lambda: any("error: model 'fashion' version 3:" in line for line in server.log),
                 "version 3's error in the server's log")

        # Version 2's file replaced by a corrupt one: the loaded version 2 goes on serving.
        with open(os.path.join(repository, "fashion", "2", "model.pt"), "wb") as f:
            f.write(b"truncated")
        state = wait_for(lambda: index_of(client)[("fashion", "2")][1], "reload failure seen")
        assert index_of(client)[("fashion", "2")][0] == "READY"
        assert state.startswith("serving the version loaded before; reloading it failed: ")
        assert served_version() == "2"

        # Fixed again: reloaded.
        shutil.copy(archive, os.path.join(repository, "fashion", "2", "model.pt"))
        wait_for(lambda: any("reloaded fashion v2" in line for line in server.log), "reload")
        wait_for(lambda: index_of(client)[("fashion", "2")] == ("READY", ""), "clean index")

        # Versions removed: unloaded; version 1 answers again.
        shutil.rmtree(os.path.join(repository, "fashion", "2"))
        shutil.rmtree(os.path.join(repository, "fashion", "3"))
        wait_for(lambda: ("fashion", "2") not in index_of(client), "version 2 unloaded")
        assert served_version() == "1"
        assert ("fashion", "3") not in index_of(client)
    finally:
        assert server.terminate() == 0


def test_sigterm_lets_grpc_requests_in_flight_finish(cli, models, tmp_path, reference):
    images, logits = reference
    repository = make_repository(str(tmp_path / "repository"), {
        "fashion": (os.path.join(models, "fashion_mnist.pt"), SLOW_CONFIG)})
    server = Server(cli, repository, "--grpc-port", "0")
    answers = []
    grpc_client(server).async_infer("fashion", [grpc_input(images[:1])],
                                    callback=lambda result, error: answers.append((result, error)))
    time.sleep(0.5)
    assert server.terminate() == 0
    result, error = answers[0]
    assert error is None, error
    np.testing.assert_allclose(result.as_numpy("logits"), logits[:1], **TOLERANCE)


def test_startup_refuses_bad_control_and_port_flags(cli, models, tmp_path):
    import subprocess
    repository = make_repository(str(tmp_path / "repository"), {
        "fashion": (os.path.join(models, "fashion_mnist.pt"), None)})
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    port = free_port()
    for flags, message in [
        (["--port", str(port), "--grpc-port", str(port)],
         f"--grpc-port {port} is the HTTP port (--port): give gRPC a port of its own"),
        (["--grpc-port", str(busy)],
         f"cannot listen for gRPC on 127.0.0.1:{busy} (address in use, or not an address of "
         "this machine)"),
        (["--load-model", "fashion"],
         "--load-model needs --model-control-mode explicit (this mode loads every model in the "
         "repository)"),
        (["--model-control-mode", "explicit", "--load-model", "nothing"],
         "--load-model nothing: the repository " + repository + " has no model folder of that "
         "name"),
    ]:
        port_flags = [] if "--port" in flags else ["--port", "0"]
        done = subprocess.run([cli, "serve", "--model-repository", repository, *port_flags,
                               *flags], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines()[-1] == "torchship: error: " + message
    taken.close()
