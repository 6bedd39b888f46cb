"""Where the C++ side lies when it came with the wheel (scripts/build-portable.sh): libtorchship
with its headers and the CMake config that `find_package(torchship)` reads. The exporter-only
package (`pip install .` of a checkout) has none: then cmake_prefix_path is None."""

import os

_PREFIX = os.path.dirname(os.path.abspath(__file__))


def _inside(*parts):
    path = os.path.join(_PREFIX, *parts)
    return path if os.path.exists(path) else None


# As torch.utils.cmake_prefix_path: cmake -DCMAKE_PREFIX_PATH=<this> finds torchship, and the
# torch wheel beside it in site-packages.
cmake_prefix_path = _inside("lib", "cmake")
