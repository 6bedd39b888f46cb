// Intentionally empty: the body of the libtorch_python.so stand-in (see src/platform/extensions.cpp).
