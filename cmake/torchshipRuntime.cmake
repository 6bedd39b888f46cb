# torchship_install_runtime(TARGET): on Windows, copies libtorch's and OpenCV's DLLs next to
# the installed executable, so that it runs without PATH changes. A no-op elsewhere (rpath).
function(torchship_install_runtime target)
  if(NOT WIN32)
    return()
  endif()
  set(dlls "")
  if(DEFINED TORCH_INSTALL_PREFIX)
    file(GLOB torch_dlls "${TORCH_INSTALL_PREFIX}/lib/*.dll")
    list(APPEND dlls ${torch_dlls})
  endif()
  install(FILES ${dlls} DESTINATION bin)
  install(CODE "
    file(GET_RUNTIME_DEPENDENCIES EXECUTABLES \$<TARGET_FILE:${target}>
      RESOLVED_DEPENDENCIES_VAR deps PRE_EXCLUDE_REGEXES \"api-ms-.*\" \"ext-ms-.*\"
      POST_EXCLUDE_REGEXES \".*system32/.*\\\\.dll\")
    file(INSTALL \${deps} DESTINATION \"\${CMAKE_INSTALL_PREFIX}/bin\")")
endfunction()
