# The torchship program's heap: jemalloc, linked in where found (Debian: libjemalloc-dev).
#
# A server that reloads models under traffic fragments glibc's heap: weights freed in one
# thread's arena beside requests' allocations in others leave pages that are neither whole nor
# free, and the 30-minute soak grew 9% in reloads alone (docs/serving.md, "Soak"); on jemalloc,
# whose extents come back whole, it stays flat. Only the program is linked with it: an
# application that links libtorchship keeps its own allocator (include/torchship/memory.h).
#
# Linked statically and whole, with the allocator's entry points exported (jemalloc.dynamic-list)
# so that every library, libtorch and those opened later (AOTInductor's, OpenVINO's plugins),
# allocates and frees through it: nothing to ship beside the program.
set(TORCHSHIP_JEMALLOC AUTO CACHE STRING
    "Link jemalloc into the torchship program: AUTO (where found), ON, OFF")
set_property(CACHE TORCHSHIP_JEMALLOC PROPERTY STRINGS AUTO ON OFF)

function(torchship_link_jemalloc target)
  set(wanted ${TORCHSHIP_JEMALLOC})
  # AddressSanitizer replaces malloc itself; elsewhere than Linux the archive is not Debian's.
  if(TORCHSHIP_SANITIZE OR TORCHSHIP_BUILD_FUZZERS OR NOT CMAKE_SYSTEM_NAME STREQUAL "Linux")
    set(wanted OFF)
  endif()
  if(wanted STREQUAL "OFF")
    return()
  endif()
  find_library(TORCHSHIP_JEMALLOC_ARCHIVE NAMES libjemalloc_pic.a)
  if(NOT TORCHSHIP_JEMALLOC_ARCHIVE)
    set(hint "install libjemalloc-dev, or configure with -DTORCHSHIP_JEMALLOC=OFF")
    if(wanted STREQUAL "ON")
      message(FATAL_ERROR "torchship: TORCHSHIP_JEMALLOC=ON but no libjemalloc_pic.a: ${hint}")
    endif()
    message(STATUS "torchship: no jemalloc; the program runs on glibc's heap, which model "
                   "reloads under traffic fragment (${hint})")
    return()
  endif()
  message(STATUS "torchship: jemalloc in the torchship program (${TORCHSHIP_JEMALLOC_ARCHIVE})")
  find_package(Threads REQUIRED)
  target_sources(${target} PRIVATE ${PROJECT_SOURCE_DIR}/src/platform/jemalloc_settings.cpp)
  target_link_libraries(${target} PRIVATE
    -Wl,--whole-archive ${TORCHSHIP_JEMALLOC_ARCHIVE} -Wl,--no-whole-archive
    -Wl,--dynamic-list=${PROJECT_SOURCE_DIR}/cmake/jemalloc.dynamic-list
    Threads::Threads ${CMAKE_DL_LIBS} m)
endfunction()
