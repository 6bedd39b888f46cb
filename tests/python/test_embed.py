"""The article's point: embed the model into a C++ system. Installs torchship into a temporary
prefix, builds examples/embed (its own CMake project: find_package(torchship)) against it, and
checks that the program prints the class Python computes. The example's CMakeLists asks for
C++17; torchship's target raises it to what the libtorch found needs (C++20 for 2.13+)."""

import importlib.util
import os
import shutil
import subprocess

import numpy as np
import torch

from conftest import BUILD, ROOT


def test_consumer_project_builds_against_the_installed_package(fixtures, tmp_path):
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", BUILD, "--prefix", str(prefix)], check=True,
                   capture_output=True)
    assert (prefix / "lib" / "cmake" / "torchship" / "torchshipConfig.cmake").exists()
    assert (prefix / "include" / "torchship" / "torchship.h").exists()
    assert (prefix / "bin" / "torchship").exists()

    build = tmp_path / "embed-build"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    # torchship's prefix, and the wheel's libtorch as a user of PyPI's torch passes it (Debian's
    # libtorch is found without it); OpenVINO's package the same way, where torchship has it
    prefixes = [str(prefix), torch.utils.cmake_prefix_path]
    if importlib.util.find_spec("openvino"):
        import openvino.utils
        prefixes.append(openvino.utils.get_cmake_path())
    configure = subprocess.run(
        ["cmake", "-S", os.path.join(ROOT, "examples", "embed"), "-B", str(build), *generator,
         f"-DCMAKE_PREFIX_PATH={';'.join(prefixes)}", "-DCMAKE_BUILD_TYPE=Release"],
        capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr

    result = subprocess.run([str(build / "classify_image"), os.path.join(fixtures, "classifier.pt"),
                             os.path.join(fixtures, "chelsea.png")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    top = result.stdout.splitlines()
    assert len(top) == 3
    expected = int(np.argmax(np.load(os.path.join(fixtures, "classifier_chelsea.npy"))))
    index, label = top[0].split(" ")[0], " ".join(top[0].split(" ")[1:-1])
    assert int(index) == expected
    assert label  # the ImageNet class name from the manifest

    # The same program runs the OpenVINO archive of the pipeline, where it was made.
    if os.path.exists(os.path.join(fixtures, "classifier.ov")):
        ov = subprocess.run([str(build / "classify_image"), os.path.join(fixtures, "classifier.ov"),
                             os.path.join(fixtures, "chelsea.png")], capture_output=True,
                            text=True, timeout=120)
        assert ov.returncode == 0, ov.stderr
        assert int(ov.stdout.splitlines()[0].split(" ")[0]) == expected

    missing = subprocess.run([str(build / "classify_image"), "nowhere.pt", "x.png"],
                             capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr == "error: cannot load nowhere.pt: no such file\n"
