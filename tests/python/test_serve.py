"""`torchship serve` over real HTTP on loopback: the KServe v2 routes, Triton's binary extension,
dynamic batching under concurrent keep-alive clients, the image endpoint, metrics, limits,
errors (each a 4xx with a JSON body, memory flat), graceful shutdown."""

import http.client
import json
import os
import socket
import threading
import time

import numpy as np
import pytest

from conftest import fashion_reference
from harness.kserve_client import Client, infer_body
from harness.server_process import Server, make_repository, metric, wait_for

FASHION_CONFIG = {"max_batch_size": 64, "max_queue_delay_us": 5000}


@pytest.fixture(scope="module")
def repository(tmp_path_factory, models, fixtures):
    return make_repository(str(tmp_path_factory.mktemp("repository")), {
        "fashion": (os.path.join(models, "fashion_mnist.pt"), FASHION_CONFIG),
        "resnet": (os.path.join(fixtures, "classifier.pt"), None),
        "generic": (os.path.join(fixtures, "generic.pt"), None),
    })


@pytest.fixture(scope="module")
def server(cli, repository):
    running = Server(cli, repository, "--threads", "2")
    yield running
    assert running.terminate() == 0


@pytest.fixture(scope="module")
def reference(models):
    return fashion_reference(models)


def test_health_and_metadata(server):
    client = server.connect()
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2").json()
    assert meta["name"] == "torchship" and "binary_tensor_data" in meta["extensions"]
    model = client.get("/v2/models/fashion").json()
    assert model == {"name": "fashion", "versions": ["1"], "platform": "pytorch_libtorch",
                     "inputs": [{"name": "images", "datatype": "UINT8", "shape": [-1, 28, 28, 1]}],
                     "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]}
    assert client.get("/v2/models/fashion/versions/1").json()["versions"] == ["1"]
    assert client.get("/v2/models/fashion/ready").json() == {"name": "fashion", "ready": True}
    assert client.get("/v2/models/fashion/versions/1/ready").status == 200
    missing = client.get("/v2/models/nope")
    assert (missing.status, missing.json()) == (404, {"error": "unknown model 'nope'"})
    version = client.get("/v2/models/fashion/versions/7/ready")
    assert (version.status, version.json()) == (
        404, {"error": "model 'fashion' has no version 7 (it has 1)"})
    route = client.get("/v2/nothing/here")
    assert route.status == 404 and route.json()["error"].startswith("no route GET /v2/nothing")


def test_json_and_binary_inference_give_pythons_logits(server, reference):
    images, logits = reference
    client = server.connect()
    plain = client.infer("fashion", {"images": images[:3]}, request_id="req-7")
    assert plain.status == 200, plain.body
    header = plain.json()
    assert (header["model_name"], header["model_version"], header["id"]) == (
        "fashion", "1", "req-7")
    assert header["outputs"][0]["name"] == "logits"
    np.testing.assert_allclose(plain.outputs()["logits"], logits[:3], atol=1e-5)

    binary = client.infer("fashion", {"images": images[:3]}, binary_inputs=True,
                          binary_outputs=True)
    assert binary.status == 200, binary.body
    assert binary.headers["content-type"] == "application/octet-stream"
    length = int(binary.headers["inference-header-content-length"])
    header = json.loads(binary.body[:length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 3 * 10 * 4}
    assert len(binary.body) == length + 120
    np.testing.assert_array_equal(binary.outputs()["logits"], plain.outputs()["logits"])

    # Named outputs with per-output binary flags; binary input with JSON output.
    mixed = client.infer("fashion", {"images": images[:1]}, binary_inputs=True,
                         outputs=["logits"], binary_outputs=False)
    assert "inference-header-content-length" not in mixed.headers
    np.testing.assert_allclose(mixed.outputs()["logits"], logits[:1], atol=1e-5)


def test_concurrent_keep_alive_clients_get_their_own_answers(server, reference):
    images, logits = reference
    errors = []
    answers = {}

    def client_loop(number):
        client = server.connect()  # one keep-alive connection, many requests
        try:
            for round_number in range(6):
                index = (number * 6 + round_number) % 64
                binary = (number + round_number) % 2 == 0
                response = client.infer("fashion", {"images": images[index:index + 1]},
                                        binary_inputs=binary, binary_outputs=binary,
                                        request_id=f"{number}-{round_number}")
                if response.status != 200:
                    errors.append(response.body)
                    continue
                assert response.json()["id"] == f"{number}-{round_number}"
                answers[(number, round_number)] = (index, response.outputs()["logits"])
        finally:
            client.close()

    before = server.connect().get("/metrics").body.decode()
    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(answers) == 32 * 6
    for index, got in answers.values():
        np.testing.assert_allclose(got, logits[index:index + 1], atol=1e-5)
    after = server.connect().get("/metrics").body.decode()
    executions = metric(after, 'torchship_executions_total{model="fashion",version="1"}') - \
        metric(before, 'torchship_executions_total{model="fashion",version="1"}')
    inferences = metric(after, 'torchship_inferences_total{model="fashion",version="1"}') - \
        metric(before, 'torchship_inferences_total{model="fashion",version="1"}')
    assert inferences == 32 * 6
    assert executions < inferences, "concurrent requests were never batched together"


def test_metrics_in_prometheus_format(server, reference):
    client = server.connect()
    client.infer("fashion", {"images": reference[0][:2]})
    client.get("/v2/models/nope/ready")
    client.request("POST", "/v2/models/fashion/infer", b"{")
    text = client.get("/metrics").body.decode()
    assert "# TYPE torchship_requests_total counter" in text
    assert metric(text, 'torchship_requests_total{model="fashion",version="1",protocol="http",status="200"}') >= 1
    assert metric(text, 'torchship_requests_total{model="fashion",version="1",protocol="http",status="400"}') >= 1
    for name in ("torchship_request_duration_seconds_bucket", "torchship_queue_duration_seconds_sum",
                 "torchship_batch_requests_count", "torchship_inferences_total",
                 "torchship_queue_depth"):
        assert name in text


def test_image_endpoint_classifies_raw_bytes(server, models, fixtures):
    client = server.connect()
    with open(os.path.join(models, "fashion_mnist_test", "00000.png"), "rb") as f:
        png = f.read()
    response = client.request("POST", "/v2/models/fashion/classify?top_k=3", png,
                              {"Content-Type": "application/x-www-form-urlencoded"})  # as curl
    assert response.status == 200, response.body
    answer = response.json()
    assert answer["model_name"] == "fashion"
    predictions = np.load(os.path.join(models, "fashion_mnist_python_predictions.npy"))
    assert [p["index"] for p in answer["predictions"]][0] == predictions[0]
    assert answer["predictions"][0]["label"] == "Ankle boot" and len(answer["predictions"]) == 3
    with open(os.path.join(fixtures, "chelsea.png"), "rb") as f:
        cat = client.request("POST", "/v2/models/resnet/classify", f.read())
    assert cat.status == 200 and len(cat.json()["predictions"]) == 5
    bad = client.request("POST", "/v2/models/fashion/classify?top_k=0", png)
    assert (bad.status, bad.json()) == (
        400, {"error": "top_k must be an integer from 1 to 1000, got \"0\""})
    junk = client.request("POST", "/v2/models/fashion/classify", b"not an image")
    assert (junk.status, junk.json()) == (
        400, {"error": "the request body is not an image torchship can decode (expected PNG, "
                       "JPEG, BMP, TIFF, WebP, PNM, PAM, PFM, Sun raster, Radiance HDR, "
                       "JPEG 2000 or OpenEXR)"})
    generic = client.request("POST", "/v2/models/generic/classify", png)
    assert generic.status == 400 and "is not a classifier" in generic.json()["error"]


BINARY_HEADER = (b'{"inputs": [{"name": "images", "datatype": "UINT8", "shape": [1, 28, 28, 1], '
                 b'"parameters": {"binary_data_size": 784}}]}')
BAD_REQUESTS = [
    (b"{not json", {}, 400,
     "the request body is not valid JSON (expected an inference request object)"),
    (b"[]", {}, 400, "expected an inference request object {\"inputs\": [...]}, got array"),
    (b'{"inputs": []}', {}, 400, "expected \"inputs\": a non-empty array of tensors"),
    (b'{"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28, 1], '
     b'"data": [0]}]}', {}, 400, "input 'images': shape [1, 28, 28, 1] needs 784 values, "
                                 "\"data\" has 1"),
    (b'{"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1], "data": [0]}]}', {},
     400, "unknown input 'pixels' (the model takes: images)"),
    (b'{"inputs": [{"name": "images", "datatype": "UINT16", "shape": [1], "data": [0]}]}', {},
     400, None),
    (b'{"inputs": [{"name": "images", "datatype": "UINT8", "shape": [1, 28, 28, 1], '
     b'"parameters": {"binary_data_size": 784}}]}', {"Inference-Header-Content-Length": "99"},
     400, None),
    (b'{"inputs": [{"name": "images", "datatype": "UINT8", "shape": [1, 28, 28, 1], '
     b'"parameters": {"binary_data_size": 784}}]}', {"Inference-Header-Content-Length": "x"},
     400, "Inference-Header-Content-Length must be a byte count, got \"x\""),
    (BINARY_HEADER + b"\0" * 10,
     {"Inference-Header-Content-Length": str(len(BINARY_HEADER))}, 400,
     "input 'images': binary_data_size 784 runs past the end of the body (10 binary bytes "
     "left)"),
]


def test_bad_requests_get_4xx_json_and_name_the_problem(server, reference):
    client = server.connect()
    for body, headers, status, message in BAD_REQUESTS:
        response = client.request("POST", "/v2/models/fashion/infer", body, headers)
        assert response.status == status, (body, response.body)
        error = response.json()["error"]
        if message is not None:
            assert error == message
    wrong_type = client.infer("fashion", {"images": reference[0][:1].astype(np.float32)})
    assert wrong_type.status == 400
    assert "input 'images'" in wrong_type.json()["error"] and "UINT8" in \
        wrong_type.json()["error"]
    wrong_shape = client.infer("fashion", {"images": np.zeros((1, 28, 28), np.uint8)})
    assert wrong_shape.status == 400 and "input 'images'" in wrong_shape.json()["error"]
    too_many = client.infer("fashion", {"images": np.zeros((65, 28, 28, 1), np.uint8)})
    assert (too_many.status, too_many.json()) == (
        400, {"error": "a request carries 1 to 64 items (max_batch_size), got 65"})
    unknown_output = client.infer("fashion", {"images": reference[0][:1]}, outputs=["probs"])
    assert (unknown_output.status, unknown_output.json()) == (
        400, {"error": "unknown output 'probs' (the model returns: logits)"})


def test_thousands_of_bad_requests_leave_memory_flat(server, reference):
    client = server.connect()
    good_body, good_headers = infer_body({"images": reference[0][:1]}, binary_inputs=True)

    def burst(count):
        for number in range(count):
            body, headers, _, _ = BAD_REQUESTS[number % len(BAD_REQUESTS)]
            assert client.request("POST", "/v2/models/fashion/infer", body, headers).status == 400
            if number % 50 == 0:  # oversize headers mixed in, and good requests
                assert client.request("POST", "/v2/models/fashion/infer", good_body,
                                      good_headers).status == 200

    burst(500)  # allocator and caches reach their working size
    before = server.rss_kb()
    burst(3000)
    after = server.rss_kb()
    assert after - before < 8 * 1024, f"RSS grew from {before} kB to {after} kB"
    assert client.infer("fashion", {"images": reference[0][:1]}).status == 200


def test_limits_api_key_and_body_size(cli, repository, reference):
    server = Server(cli, repository, "--api-key", "s3cret", "--max-body-bytes", "4096",
                    "--timeout", "1")
    try:
        client = server.connect()
        assert client.get("/v2/health/live").status == 200  # health needs no key
        assert client.get("/v2/health/ready").status == 200
        denied = client.get("/v2/models/fashion")
        assert (denied.status, denied.json()) == (401, {
            "error": "missing or wrong API key (expected the header Authorization: Bearer <key>)"})
        assert denied.headers["www-authenticate"] == "Bearer"
        assert client.get("/metrics").status == 401
        key = {"Authorization": "Bearer s3cret"}
        assert client.get("/v2/models/fashion", headers=key).status == 200
        assert client.infer("fashion", {"images": reference[0][:1]}, headers=key).status == 200
        wrong = client.infer("fashion", {"images": reference[0][:1]},
                             headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401

        big = Client("127.0.0.1", server.port)
        response = big.infer("fashion", {"images": reference[0][:8]}, headers=key)
        assert (response.status, response.json()) == (
            413, {"error": "the request body exceeds 4096 bytes (--max-body-bytes)"})

        # A client that starts a request and goes silent is disconnected after --timeout.
        slow = socket.create_connection(("127.0.0.1", server.port))
        slow.sendall(b"POST /v2/models/fashion/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100"
                     b"\r\n\r\n{")
        slow.settimeout(10)
        started = time.time()
        while slow.recv(4096):
            pass
        assert time.time() - started < 8
        slow.close()
        assert Client("127.0.0.1", server.port).get("/v2/health/live").status == 200
    finally:
        assert server.terminate() == 0


def test_full_queue_answers_503_instead_of_growing(cli, tmp_path, fixtures):
    repository = make_repository(str(tmp_path), {
        "resnet": (os.path.join(fixtures, "classifier.pt"), {"max_queue_size": 1})})
    server = Server(cli, repository, "--threads", "1")
    statuses = []
    image = np.zeros((224, 224, 3), np.uint8)
    try:
        def send():
            client = server.connect()
            response = client.infer("resnet", {"image": image}, binary_inputs=True,
                                    binary_outputs=True)
            statuses.append((response.status, response.json() if response.status != 200
                             else None))
            client.close()
        threads = [threading.Thread(target=send) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        assert server.terminate() == 0
    codes = [status for status, _ in statuses]
    assert codes.count(200) >= 1 and codes.count(503) >= 1, codes
    assert set(codes) <= {200, 503}
    full = next(body for status, body in statuses if status == 503)
    assert full["error"].startswith("model 'resnet' has 1 requests waiting, the most its queue "
                                    "holds (max_queue_size)")


def test_sigterm_finishes_requests_in_flight(cli, tmp_path, models, reference):
    # A batch that waits up to 2 s for company holds the request in the server's queue: SIGTERM
    # is sent once the queue gauge shows it there, so the request is in flight, not on its way.
    repository = make_repository(str(tmp_path), {
        "fashion": (os.path.join(models, "fashion_mnist.pt"),
                    {"max_batch_size": 64, "max_queue_delay_us": 2_000_000})})
    server = Server(cli, repository, "--threads", "1")
    results = []

    def one_request():
        try:
            results.append(server.connect().infer("fashion", {"images": reference[0][:1]}).status)
        except (ConnectionError, OSError, http.client.HTTPException) as error:
            results.append(repr(error))

    thread = threading.Thread(target=one_request)
    thread.start()
    gauge = 'torchship_queue_depth{model="fashion",version="1"}'
    wait_for(lambda: metric(server.connect().get("/metrics").body.decode(), gauge) == 1,
             "the request in the server's queue")
    code = server.terminate()
    thread.join()
    assert code == 0
    assert results == [200]  # the request in flight was answered
    assert any("received SIGTERM: finishing requests in flight" in line for line in server.log)
    assert server.log[-1] == "torchship: info: stopped"
