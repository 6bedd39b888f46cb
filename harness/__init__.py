"""The harness that starts `torchship serve` and speaks KServe v2 to it, shared by the tests
(tests/python) and the benchmarks (bench/), so that neither imports the other's code.

    kserve_client    a small KServe v2 HTTP client (JSON and Triton's binary tensor extension)
    server_process   `torchship serve` on a loopback port, a model repository, polling helpers
    fashion_data     the Fashion-MNIST test images that build/models holds

It imports the standard library, numpy and (for the images) cv2 only: never torch, bench or
tests (tests/python/test_python_layering.py holds that rule).
"""
