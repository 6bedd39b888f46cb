"""The install paths a user takes, each tried from nothing on a clean Debian 12: a root filesystem
from `debootstrap --variant=minbase` with python3, python3-venv and pip only (no compiler, no -dev
package; scripts/make-rootfs.sh), run as containers by podman.

- the wheel for torch 2.13.0: `pip install` torch's CPU wheel, openvino's and torchship's, then
  `torchship --version`, `classify` a photo with a .pt and a .ov, `serve` a .pt2 and a .ov that
  Triton's clients ask over HTTP and gRPC, and, once a compiler is added, examples/embed built
  against `torchship.cmake_prefix_path`;
- the wheel for torch 2.14.1 (PyPI's default), beside the PyPI stack's torch: pip keeps that
  torch, and the program runs the same archives with it;
- the tarball: unpacked where no torch wheel is, a .ov classified with the OpenVINO runtime it
  carries, examples/embed built with only CMAKE_PREFIX_PATH=<the folder>, no absolute RUNPATH;
- the container image (docker/Dockerfile), built on the same base: non-root, its health check,
  the model repository as a volume, .pt, .pt2 and .ov served over HTTP and gRPC, SIGTERM exits 0.

Run by `scripts/test.sh portable` after scripts/build-portable.sh, with the portable stack's
interpreter (torch 2.13.0, the release the first wheel is pinned to), which exports the models.
How long each step took goes to build-portable/portable-times.json, which test.sh prints."""

import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("TORCHSHIP_BUILD", os.path.join(ROOT, "build-portable"))
DIST = os.path.join(BUILD, "dist")
PHOTOS = "/usr/lib/python3/dist-packages/skimage/data"
# torchship and the harness come from pyproject.toml's pytest pythonpath (python/ and the root).
sys.path.insert(0, os.path.join(ROOT, "examples", "pretrained"))

import torchship  # noqa: E402
from harness.server_process import Server  # noqa: E402

grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] from PyPI")
httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] from PyPI")
efficientnet_lite0 = pytest.importorskip("efficientnet_lite0", reason="the pretrained weights")

# podman's default runtime (crun) fails on this kind of host ("cgroups in hybrid mode"); runc
# works. Without explicit limits, setrlimit is refused, and so are limits near the host's.
PODMAN = ["podman", "--runtime", "/usr/sbin/runc"]
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
TIMES = {}
# Both sides run the same fp32 network on the same pixels (PNG decodes exactly; both resize with
# OpenCV's fixed-point INTER_LINEAR): kernels differ in rounding only (test_pretrained.py).
SCORE_ATOL = 1e-4
# The tiny model's outputs against eager PyTorch: a 4x3 matmul and a ReLU in fp32.
TINY_TOLERANCE = dict(rtol=1e-5, atol=1e-6)


def timed(name):
    class Timer:
        def __enter__(self):
            self.started = time.monotonic()

        def __exit__(self, *exc):
            TIMES[name] = round(time.monotonic() - self.started, 1)
            with open(os.path.join(BUILD, "portable-times.json"), "w") as f:
                json.dump(TIMES, f, indent=1)
    return Timer()


def podman(*args, timeout=900, check=True):
    done = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"podman {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


class Container:
    """A container of `image` kept alive while commands run in it (podman exec)."""

    def __init__(self, image, volumes):
        mounts = [a for host, inside in volumes.items() for a in ("-v", f"{host}:{inside}:ro")]
        self.id = podman("run", "-d", "--network", "host", *LIMITS, *mounts, image,
                         "sleep", "infinity").stdout.strip()

    def sh(self, script, timeout=900):
        done = podman("exec", self.id, "sh", "-c", script, timeout=timeout, check=False)
        assert done.returncode == 0, f"{script}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def command(self, *args):
        return [*PODMAN, "exec", self.id, *args]

    def remove(self):
        podman("rm", "-f", "-t", "0", self.id, check=False)


# The torch releases there is a wheel for: the portable stack's and the PyPI stack's.
TORCH_RELEASES = ("2.13.0", "2.14.1")


@pytest.fixture(scope="module")
def dist():
    found = {}
    for release in TORCH_RELEASES:
        wheels = glob.glob(os.path.join(DIST, f"torchship-*+torch{release}-*.whl"))
        if len(wheels) != 1:
            pytest.fail(f"{DIST} must hold one wheel for torch {release}, holds {wheels}: "
                        "run scripts/build-portable.sh")
        found[release] = wheels[0]
    tarballs = glob.glob(os.path.join(DIST, "torchship-*.tar.gz"))
    if len(tarballs) != 1:
        pytest.fail(f"{DIST} must hold one tarball, holds {tarballs}: run scripts/build-portable.sh")
    return {"wheel": found["2.13.0"], "wheel 2.14.1": found["2.14.1"], "tarball": tarballs[0]}


@pytest.fixture(scope="module")
def clean_image():
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", "make-rootfs.sh")], check=True,
                          capture_output=True, text=True).stdout.split()[-1]


@pytest.fixture(scope="module")
def wheels(dist, tmp_path_factory):
    """What `pip install torchship` needs besides torchship's wheel: the torch wheel it pins
    (2.13.0+cpu, from this machine's disk), openvino's and their dependencies, fetched by pip. The
    containers install offline from them: no index to reach from inside (this machine's proxy
    re-signs TLS with a certificate that a clean Debian does not trust)."""
    folder = str(tmp_path_factory.mktemp("wheels"))
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "-d", folder,
                    dist["wheel"]], check=True, capture_output=True)
    os.remove(os.path.join(folder, os.path.basename(dist["wheel"])))
    return folder


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x):
        return torch.relu(self.linear(x))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A model repository exported here with the pinned torch: the pretrained classifier as
    TorchScript (classifier/1/model.pt) and OpenVINO IR (classifier-ov/1/model.ov), and a tiny
    network compiled by AOTInductor (tiny/1/model.pt2), converted for OpenVINO
    (tiny-ov/1/model.ov) and in every form (tiny-auto/1/model.torchship, the engine chosen
    where it is served), with Python's answers."""
    folder = str(tmp_path_factory.mktemp("models"))
    torch.manual_seed(0)
    with timed("export: EfficientNet-Lite0 .pt"):
        (classifier,) = efficientnet_lite0.export(folder, ["torchscript"])
    with timed("export: EfficientNet-Lite0 .ov"):
        (classifier_ov,) = efficientnet_lite0.export(folder, ["openvino"])
    label, score = efficientnet_lite0.top1(efficientnet_lite0.pretrained_classifier(),
                                           os.path.join(PHOTOS, "chelsea.png"))
    tiny = Tiny().eval()
    x = torch.randn(2, 4)
    manifest = torchship.Manifest(name="tiny", inputs=[torchship.tensor_spec("x", "FP32", [-1, 4])],
                                  outputs=[torchship.tensor_spec("y", "FP32", [-1, 3])])
    with timed("export: tiny .pt2"):
        torchship.export(tiny, (x,), os.path.join(folder, "tiny.pt2"), format="aoti",
                         manifest=manifest)
    torchship.export(tiny, (x,), os.path.join(folder, "tiny.ov"), format="openvino",
                     manifest=manifest)
    with timed("export: tiny .torchship"):
        torchship.export(tiny, (x,), os.path.join(folder, "tiny.torchship"), format="auto",
                         manifest=manifest)
    for name, source in (("classifier", classifier), ("classifier-ov", classifier_ov),
                         ("tiny", os.path.join(folder, "tiny.pt2")),
                         ("tiny-ov", os.path.join(folder, "tiny.ov")),
                         ("tiny-auto", os.path.join(folder, "tiny.torchship"))):
        os.makedirs(os.path.join(folder, "repo", name, "1"))
        shutil.copy(source, os.path.join(folder, "repo", name, "1",
                                         "model" + os.path.splitext(source)[1]))
    with torch.inference_mode():
        expected = tiny(x).numpy()
    return {"folder": folder, "label": label, "score": score, "x": x.numpy(), "y": expected}


def top1(stdout):
    return json.loads(stdout)["results"][0]


def ask_tiny(http_port, grpc_port, models):
    """One inference over HTTP and one over gRPC, with Triton's own clients, of the tiny network
    as each engine runs it (AOTInductor's .pt2, OpenVINO's .ov, the form of the archive of every
    form that the server chose)."""
    x = models["x"]
    http = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    for name in ("tiny", "tiny-ov", "tiny-auto"):
        tensor = httpclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        answer = http.infer(name, [tensor]).as_numpy("y")
        np.testing.assert_allclose(answer, models["y"], **TINY_TOLERANCE, err_msg=name)
        tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        answer = grpc.infer(name, [tensor]).as_numpy("y")
        np.testing.assert_allclose(answer, models["y"], **TINY_TOLERANCE, err_msg=name)


def check_classifier_answer(top, models):
    assert top["label"] == models["label"] == "Egyptian cat"
    assert abs(top["score"] - models["score"]) <= SCORE_ATOL, (top, models["score"])


EMBED_BUILD = ("cmake -S /embed -B /tmp/embed -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH={} "
               "> /tmp/embed.log && cmake --build /tmp/embed >> /tmp/embed.log && "
               "/tmp/embed/classify_image /models/efficientnet_lite0.pt /photos/chelsea.png")
COMPILER = ("apt-get update -q > /dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
            "--no-install-recommends g++ cmake make > /dev/null")


def embed_top1(stdout):
    index, rest = stdout.splitlines()[0].split(" ", 1)
    label, score = rest.rsplit(" ", 1)
    return {"label": label, "score": float(score)}


def test_the_wheel_on_a_clean_debian(dist, clean_image, wheels, models):
    box = Container(clean_image, {DIST: "/dist", wheels: "/wheels",
                                  models["folder"]: "/models", PHOTOS: "/photos",
                                  os.path.join(ROOT, "examples", "embed"): "/embed"})
    try:
        box.sh("! command -v cc && ! command -v c++ && ! command -v cmake")  # nothing to build with
        with timed("wheel: pip install torch and torchship"):
            box.sh("python3 -m venv /venv && /venv/bin/pip install --quiet "
                   "--disable-pip-version-check --no-index --find-links /wheels "
                   f"/dist/{os.path.basename(dist['wheel'])}")
        version = box.sh("/venv/bin/torchship --version")
        assert re.match(rf"torchship {re.escape(torchship.__version__)} .*libtorch 2\.13\.0",
                        version), version
        assert "OpenVINO" in version.splitlines()[1], version
        for archive in ("efficientnet_lite0.pt", "efficientnet_lite0.ov"):
            with timed(f"wheel: torchship classify {archive}"):
                top = top1(box.sh(f"/venv/bin/torchship classify /models/{archive} "
                                  "/photos/chelsea.png --top-k 1 --json"))
            check_classifier_answer(top, models)

        with timed("wheel: serve .pt2 and .ov, HTTP and gRPC"):
            server = Server(box.command("sh", "-c", 'echo $$ > /tmp/serve.pid; exec "$0" "$@"',
                                        "/venv/bin/torchship"),
                            "/models/repo", "--grpc-port", "0")
            try:
                ask_tiny(server.port, server.grpc_port, models)
            finally:
                box.sh("kill -TERM $(cat /tmp/serve.pid)")
                assert server.terminate() == 0, server.log

        prefix = box.sh("/venv/bin/python -c 'import torchship; print(torchship.cmake_prefix_path)'")
        assert prefix.strip() == "/venv/lib/python3.11/site-packages/torchship/lib/cmake"
        with timed("wheel: add a compiler (apt-get)"):
            box.sh(COMPILER)
        with timed("wheel: build and run examples/embed"):
            check_classifier_answer(embed_top1(box.sh(EMBED_BUILD.format(prefix.strip()))), models)
    finally:
        box.remove()


def test_the_tarball_builds_an_application_where_no_torch_is(dist, clean_image, models, tmp_path):
    name = os.path.basename(dist["tarball"])[:-len(".tar.gz")]
    subprocess.run(["tar", "-xzf", dist["tarball"], "-C", str(tmp_path)], check=True)
    absolute = []
    for path in glob.glob(str(tmp_path / name / "**" / "*"), recursive=True):
        if os.path.isfile(path) and not os.path.islink(path) and open(path, "rb").read(4) == b"\x7fELF":
            dynamic = subprocess.run(["readelf", "-d", path], capture_output=True, text=True).stdout
            for entry in re.findall(r"\((?:RUNPATH|RPATH)\)\s+Library (?:runpath|rpath): \[(.*)\]",
                                    dynamic):
                absolute += [f"{path}: {e}" for e in entry.split(":") if not e.startswith("$ORIGIN")]
    assert absolute == []

    box = Container(clean_image, {dist["tarball"]: "/dist/torchship.tar.gz",
                                  models["folder"]: "/models", PHOTOS: "/photos",
                                  os.path.join(ROOT, "examples", "embed"): "/embed"})
    try:
        box.sh("! python3 -c 'import torch' 2>/dev/null")  # no torch wheel here
        box.sh("tar -xzf /dist/torchship.tar.gz -C /opt")
        version = box.sh(f"/opt/{name}/bin/torchship --version")
        assert "libtorch 2.13.0" in version and "OpenVINO" in version, version
        for archive in ("efficientnet_lite0.pt", "efficientnet_lite0.ov"):
            check_classifier_answer(top1(box.sh(
                f"/opt/{name}/bin/torchship classify /models/{archive} /photos/chelsea.png "
                "--top-k 1 --json")), models)
        with timed("tarball: add a compiler (apt-get)"):
            box.sh(COMPILER)
        with timed("tarball: build and run examples/embed"):
            check_classifier_answer(embed_top1(box.sh(EMBED_BUILD.format(f"/opt/{name}"))), models)
    finally:
        box.remove()


def stack_python(stack):
    """A stack's interpreter (scripts/env.sh): the PyPI stack's holds torch 2.14.1 and openvino."""
    return subprocess.run(["bash", "-c", "source scripts/env.sh; echo $PY"], cwd=ROOT, check=True,
                          capture_output=True, text=True,
                          env={**os.environ, "TORCHSHIP_TORCH": stack}).stdout.strip()


def pip_would_install(python, *requirements):
    """What `pip install` would install or replace in `python`'s environment, from DIST only."""
    done = subprocess.run([python, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-",
                           "--disable-pip-version-check", "--no-index", "--find-links", DIST,
                           *requirements], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return sorted(f"{item['metadata']['name']} {item['metadata']['version']}"
                  for item in json.loads(done.stdout)["install"])


def test_each_wheel_installs_beside_its_torch_without_replacing_it(dist):
    """PyPI's default torch (2.14.1): a plain `pip install torchship` takes the wheel built for
    it and nothing else; torch 2.13.0 (the portable stack's): naming the torch keeps it."""
    release = torchship.__version__
    assert pip_would_install(stack_python("pypi"), "torchship") == [
        f"torchship {release}+torch2.14.1"]
    assert pip_would_install(sys.executable, "torchship", f"torch=={torch.__version__}") == [
        f"torchship {release}+torch2.13.0"]


def test_the_wheel_for_pypis_torch_runs_with_that_torch(dist, models, tmp_path):
    """The 2.14.1 wheel installed into a site-packages beside the PyPI stack's torch and openvino
    (linked in, as pip lays them out): the program runs the archives that torch 2.13.0 exported,
    with libtorch 2.14.1, as Python answers."""
    python = stack_python("pypi")
    site = tmp_path / "site-packages"
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-deps", "--target", str(site), dist["wheel 2.14.1"]], check=True)
    for package in ("torch", "openvino"):
        found = subprocess.run([python, "-c", f"import {package}, os; "
                                f"print(os.path.dirname({package}.__file__))"], check=True,
                               capture_output=True, text=True).stdout.strip()
        os.symlink(found, site / package)
    program = str(site / "torchship" / "bin" / "torchship")
    version = subprocess.run([program, "--version"], check=True, capture_output=True,
                             text=True).stdout
    assert "libtorch 2.14.1" in version and "OpenVINO" in version, version
    for archive in ("efficientnet_lite0.pt", "efficientnet_lite0.ov"):
        done = subprocess.run([program, "classify", os.path.join(models["folder"], archive),
                               os.path.join(PHOTOS, "chelsea.png"), "--top-k", "1", "--json"],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        check_classifier_answer(top1(done.stdout), models)
    imported = subprocess.run([python, "-c", "import torchship; print(torchship.__version__)"],
                              env={**os.environ, "PYTHONPATH": str(site)}, check=True,
                              capture_output=True, text=True).stdout.strip()
    assert imported == torchship.__version__


def port_is_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_the_container_image_serves_pt_pt2_and_ov(dist, clean_image, wheels, models, tmp_path):
    context = tmp_path / "context"
    os.makedirs(context / "wheels")
    for wheel in [dist["wheel"], *glob.glob(os.path.join(wheels, "*.whl"))]:
        shutil.copy(wheel, context / "wheels")
    image = "localhost/torchship:test"
    podman("rmi", "--force", image, check=False)  # the previous run's
    podman("image", "prune", "--force", check=False)  # layers a failed build left
    with timed("image: podman build"):
        podman("build", "--quiet", "--format", "docker", "--network", "host", *LIMITS,
               "--build-arg", f"BASE={clean_image}", "--build-arg", "PIP_OPTIONS=--no-index",
               "-f", os.path.join(ROOT, "docker", "Dockerfile"), "-t", image, str(context))
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout)
    TIMES["image: size MB"] = round(size / 1e6)
    assert port_is_free(8000) and port_is_free(8001), "the image serves on 8000 and 8001"

    container = podman("run", "-d", "--network", "host", *LIMITS, "-v",
                       f"{models['folder']}/repo:/models:ro", image).stdout.strip()
    try:
        with timed("image: start until healthy"):
            deadline = time.monotonic() + 180
            while podman("healthcheck", "run", container, check=False).returncode != 0:
                assert time.monotonic() < deadline, podman("logs", container).stderr
                time.sleep(1)
        assert podman("exec", container, "id", "-u").stdout.strip() == "10001"
        ask_tiny(8000, 8001, models)
        with open(os.path.join(PHOTOS, "chelsea.png"), "rb") as f:
            photo = f.read()
        for name in ("classifier", "classifier-ov"):
            request = urllib.request.Request(
                f"http://127.0.0.1:8000/v2/models/{name}/classify?top_k=1", data=photo)
            with urllib.request.urlopen(request, timeout=60) as response:
                check_classifier_answer(json.load(response)["predictions"][0], models)
        podman("kill", "--signal", "TERM", container)
        code = podman("wait", container, timeout=60).stdout.strip()
        assert code == "0", podman("logs", container).stderr
    finally:
        podman("rm", "-f", "-t", "0", container, check=False)
        podman("rmi", "--force", image, check=False)  # 1.5 GB: the disk is shared
