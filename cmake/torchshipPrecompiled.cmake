# One precompiled header per build where the compiler allows it: libtorch's headers make a PCH
# of about 650 MB and half a minute of compiling, once per target otherwise (six targets, five
# builds in CI: the disk filled once).

# The target that owns the shared PCH: compiled with only what src/pch.h needs (libtorch's,
# OpenCV's and nlohmann_json's headers, -fPIC), so that no target's own macros are baked in.
# GCC refuses a PCH made with a macro the user does not define (OpenVINO's OV_THREAD, say).
function(torchship_add_shared_pch)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    return()
  endif()
  add_library(torchship_pch OBJECT ${PROJECT_SOURCE_DIR}/src/pch.cpp)
  target_include_directories(torchship_pch PRIVATE
    $<TARGET_PROPERTY:torch,INTERFACE_INCLUDE_DIRECTORIES> ${OpenCV_INCLUDE_DIRS})
  target_compile_options(torchship_pch PRIVATE $<TARGET_PROPERTY:torch,INTERFACE_COMPILE_OPTIONS>)
  # libtorch's targets carry definitions its headers test (USE_DISTRIBUTED): the same as the
  # library's, which every other target links.
  target_link_libraries(torchship_pch PRIVATE ${TORCHSHIP_TORCH_LIBRARIES} nlohmann_json::nlohmann_json)
  # -fPIC and -pthread (which defines _REENTRANT) for every target: the server's libraries
  # bring -pthread, and GCC refuses a PCH made without a macro the user defines and the header
  # tests.
  target_compile_options(torchship_pch PRIVATE -fPIC -pthread)
  target_precompile_headers(torchship_pch PRIVATE ${PROJECT_SOURCE_DIR}/src/pch.h)
endfunction()

function(torchship_precompile target)
  if(TARGET torchship_pch)
    # GCC takes another target's PCH when -fpic and -fpie agree and every macro the header tests
    # is defined alike; macros a target adds need only stay out of the header, as ours do.
    target_compile_options(${target} PRIVATE -fPIC -pthread)
    target_precompile_headers(${target} REUSE_FROM torchship_pch)
  else()
    # clang refuses a PCH made with other -D definitions: each target makes its own.
    target_precompile_headers(${target} PRIVATE ${PROJECT_SOURCE_DIR}/src/pch.h)
  endif()
endfunction()
