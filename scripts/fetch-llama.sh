#!/usr/bin/env bash
# Builds llama.cpp from the pinned llama-cpp-python sdist into $RBEE_LLAMA_DIR (idempotent).
#   scripts/fetch-llama.sh          static libraries + headers (what the Swift package links)
#   scripts/fetch-llama.sh --tools  also llama-server and llama-bench (for scripts/bench.sh)
. "$(dirname "$0")/common.sh"

want_tools=0
[ "${1:-}" = "--tools" ] && want_tools=1

prefix=$RBEE_LLAMA_DIR/install
if [ -f "$prefix/lib/libllama.a" ] && { [ $want_tools -eq 0 ] || [ -x "$prefix/bin/llama-bench" ]; }; then
  exit 0
fi

need_apt cmake:cmake ninja:ninja-build
mkdir -p "$RBEE_LLAMA_DIR"
archive=$RBEE_LLAMA_DIR/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz
if ! echo "$LLAMA_CPP_PYTHON_SHA256  $archive" | sha256sum -c --status 2>/dev/null; then
  log "downloading llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --no-binary llama-cpp-python -d "$tmp" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
  mv "$tmp"/llama_cpp_python-*.tar.gz "$archive.tmp"
  rm -rf "$tmp"
  echo "$LLAMA_CPP_PYTHON_SHA256  $archive.tmp" | sha256sum -c --status \
    || { log "sha256 mismatch for the llama-cpp-python archive"; rm -f "$archive.tmp"; exit 1; }
  mv "$archive.tmp" "$archive"
fi

src=$RBEE_LLAMA_DIR/src
if [ ! -f "$src/include/llama.h" ]; then
  rm -rf "$src" "$src.tmp" && mkdir -p "$src.tmp"
  tar -xzf "$archive" -C "$src.tmp" --strip-components=3 "llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"
  mv "$src.tmp" "$src"
fi

# Static libraries: binaries need no LD_LIBRARY_PATH or rpath. OpenMP off so nothing beyond
# libstdc++ is needed at run time; the same flags for the tools keep benchmarks comparable.
tools=OFF
[ $want_tools -eq 1 ] && tools=ON
log "building llama.cpp (tools=$tools); this takes a few minutes on 2 cores"
cmake -S "$src" -B "$RBEE_LLAMA_DIR/build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
  -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=$tools -DLLAMA_BUILD_TOOLS=$tools -DLLAMA_BUILD_COMMON=$tools \
  -DLLAMA_BUILD_APP=OFF ${RBEE_LLAMA_CMAKE_FLAGS:-} >/dev/null
cmake --build "$RBEE_LLAMA_DIR/build" -j"$(nproc)"
cmake --install "$RBEE_LLAMA_DIR/build" >/dev/null
log "llama.cpp installed in $prefix"
