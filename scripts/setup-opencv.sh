#!/usr/bin/env bash
# The OpenCV that the wheel and the tarball link (scripts/build-portable.sh): core, imgproc and
# imgcodecs only, static and position-independent, built once from the source that PyPI's
# opencv-python distribution carries, into $TORCHSHIP_CACHE/opencv-<version>-static.
#
# Why not Debian's libopencv: its imgcodecs pulls GDAL and about a hundred shared libraries that
# a wheel would have to carry. Built here, the codecs torchship decodes (PNG, JPEG, TIFF, WebP,
# BMP, PNM) come from OpenCV's bundled sources and end up inside libtorchship.so, hidden.
# Prints the install prefix on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
export TORCHSHIP_CACHE="${TORCHSHIP_CACHE:-$HOME/.cache/torchship}"

version=4.12.0.88
sha256=8b738389cede219405f6f3880b851efa3415ccd674752219377353f017d2994d
url=https://files.pythonhosted.org/packages/ac/71/25c98e634b6bdeca4727c7f6d6927b056080668c5008ad3c8fc9e7f8f6ec/opencv-python-$version.tar.gz
prefix="$TORCHSHIP_CACHE/opencv-${version%.*}-static"

if [ -f "$prefix/.complete" ]; then
  echo "setup: OpenCV ${version%.*} (static) in $prefix" >&2
  echo "$prefix"
  exit 0
fi

archive="$TORCHSHIP_CACHE/downloads/opencv-python-$version.tar.gz"
mkdir -p "$(dirname "$archive")"
if ! echo "$sha256  $archive" | sha256sum --check --status 2>/dev/null; then
  echo "setup: downloading opencv-python $version (source, 95 MB)" >&2
  curl -fsSL --retry 3 -o "$archive.part" "$url"
  echo "$sha256  $archive.part" | sha256sum --check --status ||
    { echo "setup: opencv-python-$version.tar.gz: checksum mismatch" >&2; exit 1; }
  mv "$archive.part" "$archive"
fi

work="$TORCHSHIP_CACHE/opencv-build"
rm -rf "$work" "$prefix"
mkdir -p "$work"
tar xzf "$archive" -C "$work" --strip-components=1 "opencv-python-$version/opencv"
echo "setup: building OpenCV ${version%.*} core, imgproc, imgcodecs (static; about 4 min on 2 cores)" >&2
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
off=(
  BUILD_TESTS BUILD_PERF_TESTS BUILD_EXAMPLES BUILD_DOCS BUILD_opencv_apps BUILD_JAVA
  BUILD_opencv_python3 OPENCV_GENERATE_PKGCONFIG
  # nothing downloaded at configure time (no network needed), nothing beyond the three modules
  WITH_IPP WITH_ITT WITH_OPENCL WITH_LAPACK WITH_EIGEN WITH_TBB WITH_OPENMP WITH_PROTOBUF WITH_ADE
  WITH_GTK WITH_QT WITH_FFMPEG WITH_GSTREAMER WITH_V4L WITH_1394 WITH_VA WITH_VA_INTEL WITH_VTK
  WITH_CUDA WITH_OPENVX WITH_OBSENSOR WITH_KLEIDICV WITH_FASTCV WITH_CAROTENE
  WITH_OPENJPEG WITH_JASPER WITH_OPENEXR WITH_GDAL WITH_GDCM WITH_AVIF WITH_IMGCODEC_GIF
)
on=(WITH_PNG WITH_JPEG WITH_TIFF WITH_WEBP BUILD_ZLIB BUILD_PNG BUILD_JPEG BUILD_TIFF BUILD_WEBP
    OPENCV_FORCE_3RDPARTY_BUILD CMAKE_POSITION_INDEPENDENT_CODE)
flags=()
for name in "${off[@]}"; do flags+=("-D$name=OFF"); done
for name in "${on[@]}"; do flags+=("-D$name=ON"); done
cmake -S "$work/opencv" -B "$work/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$prefix" -DBUILD_SHARED_LIBS=OFF -DBUILD_LIST=core,imgproc,imgcodecs \
  "${flags[@]}" > "$work/configure.log"
cmake --build "$work/build" --parallel "$(nproc 2>/dev/null || echo 2)" > "$work/build.log"
cmake --install "$work/build" > /dev/null
rm -rf "$work"
touch "$prefix/.complete"
echo "setup: OpenCV ${version%.*} (static) installed in $prefix" >&2
echo "$prefix"
