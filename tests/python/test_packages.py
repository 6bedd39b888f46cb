"""The C++ side installed the way a C++ engineer installs it: CPack's relocatable .tar.gz, unpacked
under an arbitrary prefix, and (built against Debian's libtorch) the two .debs, split as Debian
splits a library (torchship: the program, on runtime libraries only; torchship-dev: headers,
library, CMake config), installed with dpkg, used by examples/embed through nothing but
find_package(torchship), and removed again."""

import json
import os
import re
import shutil
import subprocess
import tarfile

import numpy as np
import pytest

from conftest import BUILD, ROOT


def run(command, **kwargs):
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, **kwargs)
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """cpack's packages of the build under test: {"tgz": path, "deb": path or None,
    "deb-dev": path or None}."""
    out = tmp_path_factory.mktemp("packages")
    run(["cpack", "-B", str(out)], cwd=BUILD)
    found = {"tgz": None, "deb": None, "deb-dev": None}
    for name in os.listdir(out):
        if name.endswith(".tar.gz"):
            found["tgz"] = out / name
        elif name.startswith("torchship-dev_") and name.endswith(".deb"):
            found["deb-dev"] = out / name
        elif name.startswith("torchship_") and name.endswith(".deb"):
            found["deb"] = out / name
    assert found["tgz"], os.listdir(out)
    return found


def version_lines(cli, env=None):
    return run([cli, "--version"], env=env).splitlines()


def runpaths(binary):
    dynamic = run(["readelf", "-d", str(binary)])
    return [path for entry in re.findall(r"R(?:UN)?PATH\)\s+Library r(?:un)?path: \[(.*)\]",
                                         dynamic) for path in entry.split(":") if path]


def library_path_for_libtorch(cli):
    """Where the build's libtorch (and OpenVINO, where it was built with it) live when they are
    not the system's (PyPI wheels): the user's to put on the library path, as this package
    carries neither (the portable tarball does)."""
    libraries = run(["ldd", cli])
    directories = []
    for library in (r"libtorch_cpu\.so", r"libopenvino\.so[.\d]*"):
        found = re.search(library + r" => (\S+)", libraries)
        directory = os.path.dirname(found.group(1)) if found else ""
        if directory and not directory.startswith(("/usr/", "/lib")):
            directories.append(directory)
    return {**os.environ, "LD_LIBRARY_PATH": ":".join(directories)} if directories else None


def test_the_tarball_runs_from_any_prefix(packages, cli, fixtures, tmp_path):
    prefix = tmp_path / "some" / "where" / "else"
    prefix.mkdir(parents=True)
    with tarfile.open(packages["tgz"]) as archive:
        archive.extractall(prefix)
    (top,) = os.listdir(prefix)  # the tarball's one folder
    root = prefix / top
    binary = root / "bin" / "torchship"
    assert binary.exists() and (root / "lib" / "libtorchship.a").exists()
    assert (root / "lib" / "cmake" / "torchship" / "torchshipConfig.cmake").exists()

    # No build or source folder baked in: runpaths relative, CMake files free of both.
    assert all(path.startswith("$ORIGIN") for path in runpaths(binary)), runpaths(binary)
    for folder, _, files in os.walk(root / "lib" / "cmake"):
        for name in files:
            text = open(os.path.join(folder, name)).read()
            assert os.path.realpath(BUILD) not in text and ROOT not in text, name
    info = json.load(open(root / "share" / "torchship" / "build-info.json"))
    assert info["libtorch"] in version_lines(cli)[0]

    env = library_path_for_libtorch(cli)
    assert version_lines(str(binary), env) == version_lines(cli)
    described = run([str(binary), "info", os.path.join(fixtures, "classifier.pt")], env=env)
    assert "resnet34-classifier" in described


def test_the_debs_install_build_the_embed_example_and_uninstall(packages, cli, fixtures,
                                                                tmp_path):
    if packages["deb"] is None:
        pytest.skip("a .deb is built against Debian's libtorch only (TORCHSHIP_TORCH=debian)")
    if os.geteuid() != 0 or not shutil.which("dpkg"):
        pytest.skip("installing a .deb needs root and dpkg")
    if subprocess.run(["dpkg", "-s", "torchship"], capture_output=True).returncode == 0:
        pytest.skip("a torchship package is already installed here: not replacing it")
    runtime = run(["dpkg-deb", "-f", str(packages["deb"]), "Depends"])
    assert "libtorch1.13" in runtime and "-dev" not in runtime, runtime  # a server needs no -dev
    assert run(["dpkg-deb", "-c", str(packages["deb"])]).count("/usr/include/") == 0
    dev = run(["dpkg-deb", "-f", str(packages["deb-dev"]), "Depends"])
    assert "libtorch-dev" in dev and "torchship (= " in dev, dev  # what find_package needs
    run(["dpkg", "-i", str(packages["deb"]), str(packages["deb-dev"])])
    try:
        assert version_lines("/usr/bin/torchship") == version_lines(cli)
        assert "resnet34-classifier" in run(
            ["/usr/bin/torchship", "info", os.path.join(fixtures, "classifier.pt")])

        build = tmp_path / "embed-build"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        run(["cmake", "-S", os.path.join(ROOT, "examples", "embed"), "-B", str(build),
             *generator, "-DCMAKE_BUILD_TYPE=Release"])  # nothing but find_package(torchship)
        run(["cmake", "--build", str(build)])
        top = run([str(build / "classify_image"), os.path.join(fixtures, "classifier.pt"),
                   os.path.join(fixtures, "chelsea.png")]).splitlines()
        expected = int(np.argmax(np.load(os.path.join(fixtures, "classifier_chelsea.npy"))))
        assert int(top[0].split(" ")[0]) == expected
    finally:
        run(["dpkg", "-r", "torchship-dev", "torchship"])
    assert not os.path.exists("/usr/bin/torchship")
