"""The article's point: embed the model into a C++ system. Installs torchship into a temporary
prefix, builds examples/embed (its own CMake project: find_package(torchship)) against it, and
checks that the program prints the class Python computes, from a model file and from a model
compiled into the program (loaded from memory). The example's CMakeLists asks for
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
    embedded = tmp_path / "model-to-embed.pt"  # removed once it is compiled in
    shutil.copy(os.path.join(fixtures, "classifier.pt"), embedded)
    configure = subprocess.run(
        ["cmake", "-S", os.path.join(ROOT, "examples", "embed"), "-B", str(build), *generator,
         f"-DCMAKE_PREFIX_PATH={';'.join(prefixes)}", "-DCMAKE_BUILD_TYPE=Release",
         f"-DEMBED_MODEL={embedded}"],
        capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    embedded.unlink()

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

    # The archive compiled into the program, loaded from memory: no model file exists any more,
    # and the temporary folder cannot be written (a write to disk would fail the load).
    no_writes = {**os.environ, "TMPDIR": str(tmp_path / "no-such-folder")}
    inside = subprocess.run([str(build / "classify_embedded"),
                             os.path.join(fixtures, "chelsea.png")], capture_output=True,
                            text=True, timeout=120, env=no_writes)
    assert inside.returncode == 0, inside.stderr
    # The same classes; scores as close as two loads of one archive are (the load-time optimizer
    # may keep another candidate in another process: rounding differs, within the golden rule).
    embedded_top = [line.rsplit(" ", 1) for line in inside.stdout.splitlines()]
    assert [head for head, _ in embedded_top] == [line.rsplit(" ", 1)[0] for line in top]
    assert np.allclose([float(score) for _, score in embedded_top],
                       [float(line.rsplit(" ", 1)[1]) for line in top], rtol=1e-3, atol=1e-5)

    missing = subprocess.run([str(build / "classify_image"), "nowhere.pt", "x.png"],
                             capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr == "error: cannot load nowhere.pt: no such file\n"
