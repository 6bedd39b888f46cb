"""The C++ library's layers hold (scripts/check_layering.py): no include runs back up, public
headers include only public ones, every source file has its header. The check is also shown to
fail on the mistakes it exists for, on a copy of the tree."""

import os
import shutil
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHECK = os.path.join(ROOT, "scripts", "check_layering.py")


def run_check(root):
    return subprocess.run([sys.executable, CHECK, "--root", root], capture_output=True, text=True)


def copy_of_tree(tmp_path):
    for folder in ("src", "include"):
        shutil.copytree(os.path.join(ROOT, folder), tmp_path / folder)
    return tmp_path


def problems_of(root):
    """The check's lines on a tree that must fail it."""
    result = run_check(str(root))
    assert result.returncode == 1
    return result.stdout.splitlines()


def prepend_line(path, line):
    """`line` becomes line 1 of the file."""
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(line + "\n" + text)


def test_the_layering_holds():
    result = run_check(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("layering holds: ")


def test_an_include_from_a_higher_layer_is_named(tmp_path):
    root = copy_of_tree(tmp_path)
    prepend_line(root / "src" / "backends" / "backend.h", '#include "torchship/model.h"')
    assert ("src/backends/backend.h:1: #include \"torchship/model.h\": layer 'backends' includes "
            "from layer 'model', which comes after it") in problems_of(root)


def test_the_serving_fronts_do_not_include_each_other(tmp_path):
    root = copy_of_tree(tmp_path)
    prepend_line(root / "src" / "serving" / "grpc" / "grpc_front.h",
                '#include "serving/http/http_front.h"')
    assert ("src/serving/grpc/grpc_front.h:1: #include \"serving/http/http_front.h\": layer "
            "'serving/grpc' includes from layer 'serving/http', which comes beside it"
            ) in problems_of(root)


def test_a_public_header_including_an_internal_one_is_named(tmp_path):
    root = copy_of_tree(tmp_path)
    prepend_line(root / "include" / "torchship" / "model.h", '#include "model/model_impl.h"')
    assert ("include/torchship/model.h:1: #include \"model/model_impl.h\": a public header "
            "includes an internal one") in problems_of(root)


def test_a_source_file_without_a_header_is_named(tmp_path):
    root = copy_of_tree(tmp_path)
    (root / "src" / "io" / "orphan.cpp").write_text('#include "torchship/npy.h"\n')
    assert ("src/io/orphan.cpp: no header of its own (orphan.h); give it one, or state in "
            "SHARED_HEADERS which it shares and why") in problems_of(root)


def test_json_reaching_the_grpc_front_is_named_with_its_chain(tmp_path):
    root = copy_of_tree(tmp_path)
    prepend_line(root / "src" / "serving" / "grpc" / "request_conversion.h",
                 '#include "torchship/tensor_json.h"')
    assert ("src/serving/grpc/grpc_front.cpp: layer 'serving/grpc' speaks no JSON, but includes "
            "it: serving/grpc/request_conversion.h -> torchship/tensor_json.h -> <nlohmann/json>"
            ) in problems_of(root)


def test_the_cli_reaching_into_the_library_is_named(tmp_path):
    root = copy_of_tree(tmp_path)
    shutil.copytree(os.path.join(ROOT, "tools"), tmp_path / "tools")
    prepend_line(root / "tools" / "torchship" / "cmd_run.cpp", '#include "model/model_impl.h"')
    assert ("tools/torchship/cmd_run.cpp:1: #include \"model/model_impl.h\": the command-line tool "
            "includes a library-internal header; use the public API, or list it in "
            "CLI_INTERNAL_HEADERS with the reason") in problems_of(root)
