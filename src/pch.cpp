// The translation unit that compiles src/pch.h once for every target of a GCC build
// (cmake/torchshipPrecompiled.cmake).
