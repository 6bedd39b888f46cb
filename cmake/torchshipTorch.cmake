# torchship_find_torch(): find_package(Torch) for torchship and for projects that
# find_package(torchship), with either libtorch a user has: Debian's (1.13, CPU) or a PyPI wheel
# found through CMAKE_PREFIX_PATH=$(python -c 'import torch; print(torch.utils.cmake_prefix_path)').
#
# Sets TORCHSHIP_CXX_STANDARD: the C++ standard the libtorch found needs (its torch target's
# CXX_STANDARD: 14 for 1.13, 20 for >= 2.13), never below torchship's own 17.
macro(torchship_find_torch)
  # A CUDA build of libtorch (the PyPI wheels are) makes TorchConfig look for a CUDA toolkit of
  # the wheel's own CUDA version and stop when there is none or another one, although a program
  # that compiles no CUDA code needs no toolkit: libtorch_cuda and c10_cuda find the wheel's CUDA
  # runtime through their RPATH. The one target the config's imported libraries name is
  # torch::cudart; defined here (empty) it makes the config skip the toolkit search, so a plain
  # configure works with any toolkit or none. A project that compiles CUDA itself finds Torch
  # first, and then this is a no-op.
  if(NOT TARGET torch::cudart)
    add_library(torch::cudart INTERFACE IMPORTED)
  endif()
  # A libtorch in CMAKE_PREFIX_PATH (a wheel's share/cmake) looks up its own libraries with
  # find_library(... PATHS <its lib>), which searches the system first: with Debian's
  # libtorch-dev installed too, it would link Debian's libc10.so. Searching only the given
  # prefixes and hints while Torch is found keeps it to its own.
  # (TORCHSHIP_TORCH_HINTS: where torchship's installed config expects a torch wheel, after the
  # caller's own prefixes)
  find_path(_torchship_torch_config TorchConfig.cmake PATHS ${CMAKE_PREFIX_PATH}
            ${TORCHSHIP_TORCH_HINTS} PATH_SUFFIXES Torch cmake/Torch share/cmake/Torch
            NO_DEFAULT_PATH)
  if(_torchship_torch_config AND NOT Torch_DIR)
    set(Torch_DIR "${_torchship_torch_config}")
  endif()
  # (the caller's own settings of these two are restored afterwards)
  set(_torchship_saved_system_path "${CMAKE_FIND_USE_CMAKE_SYSTEM_PATH}")
  set(_torchship_saved_environment_path "${CMAKE_FIND_USE_SYSTEM_ENVIRONMENT_PATH}")
  if(_torchship_torch_config)
    set(CMAKE_FIND_USE_CMAKE_SYSTEM_PATH FALSE)
    set(CMAKE_FIND_USE_SYSTEM_ENVIRONMENT_PATH FALSE)
  endif()
  find_package(Torch REQUIRED)
  set(CMAKE_FIND_USE_CMAKE_SYSTEM_PATH "${_torchship_saved_system_path}")
  set(CMAKE_FIND_USE_SYSTEM_ENVIRONMENT_PATH "${_torchship_saved_environment_path}")
  if(CMAKE_FIND_USE_CMAKE_SYSTEM_PATH STREQUAL "")
    unset(CMAKE_FIND_USE_CMAKE_SYSTEM_PATH)
  endif()
  if(CMAKE_FIND_USE_SYSTEM_ENVIRONMENT_PATH STREQUAL "")
    unset(CMAKE_FIND_USE_SYSTEM_ENVIRONMENT_PATH)
  endif()
  unset(_torchship_saved_system_path)
  unset(_torchship_saved_environment_path)
  unset(_torchship_torch_config CACHE)

  # A CUDA build's libtorch.so (PyPI's wheels) needs libtorch_cuda, which maps the CUDA
  # libraries when a process starts: about 400 MB of RSS and 0.2 s, GPU or not. torchship links
  # libtorch_cpu and c10 alone, with the include folders and flags of the whole libtorch, and
  # loads libtorch_cuda when a model asks for a CUDA device (src/platform/cuda_runtime.cpp).
  if(TARGET torch_cuda AND TARGET torch_cpu_library)
    set(TORCHSHIP_LIBTORCH_CUDA 1)
    set(TORCHSHIP_TORCH_LIBRARIES torch_cpu_library c10)
  else()
    set(TORCHSHIP_LIBTORCH_CUDA 0)
    set(TORCHSHIP_TORCH_LIBRARIES ${TORCH_LIBRARIES})
  endif()

  get_target_property(_torchship_torch_std torch CXX_STANDARD)
  if(_torchship_torch_std AND _torchship_torch_std GREATER 17)
    set(TORCHSHIP_CXX_STANDARD ${_torchship_torch_std})
  else()
    set(TORCHSHIP_CXX_STANDARD 17)
  endif()
  unset(_torchship_torch_std)
endmacro()
