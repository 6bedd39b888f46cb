"""Every bad input gets one line on stderr that says what was expected and what came, and the
documented exit code (2 for bad usage, input or model); nothing prints a stack trace."""

import glob
import json
import os
import subprocess
import zipfile

import numpy as np
import pytest
import torch
import torchvision

from conftest import GOLDEN_INDEX, stderr_lines


def assert_error(result, message: str, code: int = 2) -> None:
    assert result.returncode == code, result.stderr
    assert stderr_lines(result) == [f"torchship: error: {message}"]
    assert result.stdout == ""


# Which broken file gets which message is the library's to test (tests/cpp: Archive); here, that
# every command turns a bad archive into its one line and exit 2.
@pytest.mark.parametrize("command", ["info", "run", "classify", "check", "bench"])
def test_bad_model_files(run, command):
    args = [command, "truncated.pt"] + (["chelsea.png"] if command == "classify" else [])
    assert_error(run(*args), "cannot load truncated.pt: the zip is truncated or corrupt")
    if command == "info":
        assert_error(run(command, "missing.pt"), "cannot load missing.pt: no such file")


def test_not_an_image(run):
    assert_error(run("classify", "classifier.pt", "not_an_image.png"),
                 "not_an_image.png is not an image torchship can decode (expected PNG, JPEG, BMP, "
                 "TIFF, WebP, PNM, PAM, PFM, Sun raster, Radiance HDR, JPEG 2000 or OpenEXR)")
    assert_error(run("run", "classifier.pt", "--input", "not_an_image.png"),
                 "not_an_image.png is not an image torchship can decode (expected PNG, JPEG, BMP, "
                 "TIFF, WebP, PNM, PAM, PFM, Sun raster, Radiance HDR, JPEG 2000 or OpenEXR)")


def test_classify_goes_on_after_a_bad_image_and_says_so_in_the_exit_code(run):
    result = run("classify", "classifier.pt", "not_an_image.png", "chelsea.png", "-k", "1")
    assert result.returncode == 2
    assert stderr_lines(result)[0].startswith("torchship: error: not_an_image.png is not an image")
    assert result.stdout.startswith("chelsea.png\n")


def test_detect_refuses_what_is_no_detector_or_no_number(run, tmp_path):
    assert_error(run("detect", "classifier.pt", "chelsea.png"),
                 "detect needs a model whose manifest declares task 'detection'; classifier.pt's "
                 "task is 'classification' (use classify, segment or run)")
    assert_error(run("detect", "fixed_boxes_pixels.pt", "chelsea.png", "--min-score", "nan"),
                 "--min-score must be a finite number, got nan")
    a_file = tmp_path / "overlay.png"
    a_file.write_bytes(b"")
    result = run("detect", "fixed_boxes_pixels.pt", "chelsea.png", "astronaut_small.png",
                 "--overlay", str(a_file))
    assert_error(result, f"--overlay {a_file}: with several images this must be a folder (it is "
                         "a file)")
    # A bad image among good ones: reported, the others detected, exit 2.
    result = run("detect", "fixed_boxes_pixels.pt", "not_an_image.png", "chelsea.png", "--jsonl")
    assert result.returncode == 2
    assert stderr_lines(result)[0].startswith("torchship: error: not_an_image.png is not an image")
    assert [len(json.loads(line)["detections"]) for line in result.stdout.splitlines()] == [2]


def test_npy_with_wrong_dtype_or_rank(run):
    assert_error(run("run", "classifier.pt", "--input", "wrong_dtype.npy"),
                 "input 'image': expected UINT8 tensor of shape [224, 224, 3] (HWC), got FP32 "
                 "[224, 224, 3]")
    assert_error(run("run", "classifier.pt", "--input", "wrong_rank.npy"),
                 "input 'image': expected UINT8 tensor of shape [224, 224, 3] (HWC), got UINT8 "
                 "[224, 224]")
    assert_error(run("run", "classifier.pt", "--input", "fortran.npy"),
                 "cannot read fortran.npy as .npy: Fortran-order arrays are not supported; save "
                 "with numpy.save(path, numpy.ascontiguousarray(array))")


def test_wrong_number_of_inputs(run):
    assert_error(run("run", "classifier.pt"), "expected 1 input (image: Tensor), got 0")
    assert_error(run("run", "classifier.pt", "-i", "chelsea.png", "-i", "chelsea.png"),
                 "expected 1 input (image: Tensor), got 2")
    assert_error(run("run", "plain.pt", "-i", "wrong_rank.npy"),
                 "expected 2 inputs (a: Tensor, b: Tensor), got 1")


def test_inputs_the_model_itself_rejects(run):
    assert_error(run("run", "segmentation.pt", "--input", "[chelsea.png,random_0.png]"),
                 "the model rejected the input: all images of a list must have the same size: "
                 "got [300, 451, 3] and [97, 131, 3]")
    assert_error(run("run", "generic.pt", "-i", "[]", "-i", "[1, 2]", "-i", "{}", "-i", "null",
                     "-i", '"x"'),
                 "input 'pair'[0]: expected a tensor object {\"datatype\", \"shape\", \"data\"}, "
                 "got an integer")


def test_missing_input_file(run):
    assert_error(run("run", "classifier.pt", "--input", "nowhere.png"),
                 "input 'image': no such file nowhere.png")
    assert_error(run("run", "classifier.pt", "--input", "nowhere.npy"),
                 "cannot read nowhere.npy: no such file or not readable")


def test_unknown_subcommand_and_bad_usage(run):
    assert_error(run("frobnicate", "classifier.pt"),
                 "unknown command 'frobnicate' (expected info, run, classify, segment, detect, "
                 "check, bench or serve; see torchship --help)")
    result = run("info")
    assert result.returncode == 2
    assert stderr_lines(result) == [
        "torchship: error: MODEL is required (see torchship --help)"]
    result = run("classify", "classifier.pt", "chelsea.png", "--top-k", "0")
    assert result.returncode == 2
    assert len(stderr_lines(result)) == 1


def test_help_on_every_subcommand(run):
    for command in ["info", "run", "classify", "segment", "check", "bench"]:
        result = run(command, "--help")
        assert result.returncode == 0
        assert "--device" in result.stdout and "MODEL" in result.stdout


def test_version_names_the_release_libtorch_backends_and_protocols(cli):
    import re
    import torchship
    lines = subprocess.run([cli, "--version"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    first = re.fullmatch(r"torchship (\S+) \(libtorch (\d+)\.(\d+)\.\d+, (with CUDA|CPU only)\)",
                         lines[0])
    assert first, lines
    assert first.group(1) == torchship.__version__  # one version for both sides
    release = (int(first.group(2)), int(first.group(3)))
    # OpenVINO where the build found its CMake package (the PyPI stack installs the wheel).
    openvino = os.path.exists(os.path.join(os.path.dirname(cli), "..", "CMakeCache.txt")) and \
        "OpenVINO_DIR:PATH=/" in open(os.path.join(os.path.dirname(cli), "..",
                                                  "CMakeCache.txt")).read()
    backends = ["TorchScript"] + (["AOTInductor"] if release >= (2, 6) else []) + \
        (["OpenVINO"] if openvino else []) + (["CUDA"] if first.group(4) == "with CUDA" else [])
    assert lines[1:] == ["backends: " + ", ".join(backends), "serve: HTTP, gRPC"]


def test_cuda_is_loaded_only_when_asked_for(cli):
    # A CUDA build of libtorch costs every process its CUDA libraries (400 MB of RSS) unless
    # they are loaded on demand: the CLI links libtorch's CPU library alone
    # (src/platform/cuda_runtime.cpp) and loads libtorch_cuda when a model asks for a CUDA device.
    if "with CUDA" not in subprocess.run([cli, "--version"], capture_output=True,
                                         text=True).stdout:
        pytest.skip("this libtorch is not a CUDA build")
    needed = [line.split("[")[1].rstrip("]") for line in subprocess.run(
        ["readelf", "-d", cli], capture_output=True, text=True, check=True).stdout.splitlines()
        if "(NEEDED)" in line]
    assert "libtorch_cpu.so" in needed
    assert not {"libtorch.so", "libtorch_cuda.so", "libc10_cuda.so"} & set(needed), needed


def test_cuda_where_there_is_none(run, cli):
    # PyPI's torch 2.x is a CUDA build; on a machine without a GPU it says so instead.
    if "with CUDA" in subprocess.run([cli, "--version"], capture_output=True, text=True).stdout:
        if torch.cuda.is_available():
            pytest.skip("a CUDA device is present: scripts/gpu-check.sh tests it")
        why = "no CUDA device is visible"
    else:
        why = "this libtorch was built without CUDA"
    assert_error(run("info", "plain.pt", "--device", "cuda"),
                 f"device 'cuda' requested, but {why}; use --device cpu")
    assert_error(run("info", "plain.pt", "--device", "tpu"),
                 "invalid device 'tpu': expected cpu, cuda or cuda:N")


def test_missing_custom_operator_names_it_and_its_library(run):
    result = run("info", "detection.pt", env={"TORCHSHIP_TORCHVISION_OPS": ""})
    assert_error(result,
                 "cannot load detection.pt: the model calls operator torchvision::roi_align, "
                 "which no loaded library provides; it comes from torchvision's operator library "
                 "(the torchvision built for this libtorch: python3-torchvision for Debian's, "
                 "the wheel's torchvision for a PyPI torch, or libtorchvision), which was not "
                 "found; install it, set TORCHSHIP_TORCHVISION_OPS, or pass it with --extension "
                 "PATH")


def test_extension_option_loads_a_library(run):
    # The operator library of the torchvision built for this torch (and this build's libtorch).
    library = glob.glob(os.path.join(os.path.dirname(torchvision.__file__), "_C*.so"))[0]
    result = run("info", "detection.pt", "--extension", library,
                 env={"TORCHSHIP_TORCHVISION_OPS": ""})
    assert result.returncode == 0, result.stderr
    assert_error(run("info", "plain.pt", "--extension", "/nonexistent/libops.so"),
                 "cannot load extension library /nonexistent/libops.so: no such file")


def test_check_passes_on_faithful_archives(run):
    for name in ["classifier.pt", "segmentation.pt", "generic.pt", "detection.pt"]:
        result = run("check", name)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[-1].startswith("PASS: ")
    out = run.json("check", "segmentation.pt", "--json")
    assert out["ok"] is True and len(out["cases"]) == 2
    assert [leaf["path"] for leaf in out["cases"][0]["outputs"]] == [
        "output[0]", "output[1]", "output[2]"]


def test_check_fails_with_exit_3_when_outputs_differ(run):
    result = run("check", "tampered.pt")
    assert result.returncode == 3
    lines = result.stdout.splitlines()
    assert lines[0] == "golden case 0"
    assert "MISMATCH: values differ beyond tolerance" in lines[1]
    assert "max abs 0.5" in lines[1]
    assert lines[-1].startswith("FAIL: 1 golden case")
    out = run.json_any_code("check", "tampered.pt", "--json")
    assert out["ok"] is False and out["cases"][0]["outputs"][0]["max_abs"] == 0.5


def test_check_without_golden_vectors(run):
    assert_error(run("check", "plain.pt"),
                 "plain.pt has no golden vectors (export it with torchship.export to record them)")


def test_check_of_an_archive_whose_golden_index_lists_no_case_is_no_pass(run, fixtures, tmp_path):
    # "PASS: 0 golden cases" would certify an archive that proves nothing.
    empty = tmp_path / "empty_index.pt"
    with zipfile.ZipFile(os.path.join(fixtures, "classifier.pt")) as source, \
            zipfile.ZipFile(empty, "w", zipfile.ZIP_STORED) as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("/" + GOLDEN_INDEX):
                index = json.loads(data)
                index["cases"] = []
                data = json.dumps(index).encode()
            target.writestr(item, data)
    for extra in ([], ["--json"]):
        result = run("check", str(empty), *extra)
        assert_error(result, f"{empty} has no golden cases to check: its golden index lists none "
                             "(export it with torchship.export to record them)")
        assert "PASS" not in result.stdout


def test_hostile_files_are_refused_before_anything_is_allocated(run, tmp_path):
    import struct
    import zlib

    def npy(shape, data=b""):
        header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"
        header += " " * (117 - len(header)) + "\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data
    big = tmp_path / "big.npy"
    big.write_bytes(npy("(100000, 100000, 100)", b"\0" * 64))
    assert_error(run("run", "classifier.pt", "-i", str(big)),
                 f"cannot read {big} as .npy: truncated data (the header's shape [100000, 100000, "
                 f"100] needs 4000000000000 bytes, the file has 64)")
    overflow = tmp_path / "overflow.npy"
    overflow.write_bytes(npy("(9223372036854775807, 3)"))
    assert_error(run("run", "classifier.pt", "-i", str(overflow)),
                 f"cannot read {overflow} as .npy: shape [9223372036854775807, 3] has more "
                 f"elements than a tensor can hold")
    # Bytes of a name that are not text come back escaped, never raw on the terminal.
    odd = tmp_path / "odd.npy"
    odd.write_bytes(npy("(3,)", b"\0" * 12).replace(b"<f4", b"<f\xff"))
    assert_error(run("run", "classifier.pt", "-i", str(odd)),
                 f"cannot read {odd} as .npy: unsupported dtype '<f\\xff' (expected bool, int, "
                 f"uint8, float or complex)")

    # A real PNG of 30000 x 30000 pixels in 854 kB: refused from its header.
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
    deflate = zlib.compressobj(9)
    rows = b"".join(deflate.compress(b"\0" * 30001) for _ in range(30000)) + deflate.flush()
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000,
                                                                       8, 0, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    assert_error(run("classify", "classifier.pt", str(bomb)),
                 f"{bomb} is a PNG image of 30000 x 30000 pixels (900000000), more than the "
                 f"limit of 120000000 (--max-image-pixels)")
    # A device has no size to check: refused, not read forever.
    assert_error(run("run", "classifier.pt", "-i", "/dev/zero"),
                 "cannot read image /dev/zero: not a regular file")
    # The limit is the user's: the same photo passes or not by --max-image-pixels.
    assert run("classify", "classifier.pt", "chelsea.png", "--max-image-pixels",
               "135300").returncode == 0
    assert_error(run("classify", "classifier.pt", "chelsea.png", "--max-image-pixels", "135299"),
                 "chelsea.png is a PNG image of 451 x 300 pixels (135300), more than the limit of "
                 "135299 (--max-image-pixels)")


def test_bracket_specs_that_do_not_fit_the_argument(run, tmp_path):
    pair = str(tmp_path / "pair.npy")
    np.save(pair, np.array([1, 2], dtype=np.int64))
    xs = '[{"datatype": "FP32", "shape": [1], "data": [1]}]'

    def generic(pair_spec, scale="0.5"):
        return run("run", "generic.pt", "-i", xs, "-i", pair_spec, "-i", "{}", "-i", scale,
                   "-i", '"cat"')

    assert_error(generic(f"[{pair}]"),
                 f"input 'pair': a list [{pair}] of 1 was given, but the argument is "
                 "Tuple[Tensor, int] (2 elements)")
    assert_error(generic(f"[{pair},[3]"),
                 f"input 'pair': the bracket opened at character 1 of [{pair},[3] is not closed")
    assert_error(generic(f"[{pair}, 3]", scale=f"[{pair}]"),
                 f"input 'scale': a list [{pair}] was given, but the argument is Optional[float]")
    deep = "[" * 200 + "a.npy" + "]" * 200
    assert_error(generic(deep), "input 'pair' nests arrays and objects deeper than 128 levels")
