#!/usr/bin/env bash
# Builds llama.cpp from the pinned llama-cpp-python sdist into $RBEE_LLAMA_DIR (idempotent).
#   scripts/fetch-llama.sh          static libraries + headers (what the Swift package links)
#   scripts/fetch-llama.sh --tools  also llama-server and llama-bench (for scripts/bench.sh)
. "$(dirname "$0")/common.sh"

want_tools=0
[ "${1:-}" = "--tools" ] && want_tools=1

# Static libraries: binaries need no LD_LIBRARY_PATH or rpath. OpenMP off so nothing beyond
# libstdc++ is needed at run time. llamafile's sgemm off: it serves only batches of 2 or more
# columns, so with it a sequence's logits would depend on what it is batched with, and seeded
# requests would not reproduce under load. The tools get the same flags, so benchmarks compare
# like with like.
flags="-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
-DGGML_OPENMP=OFF -DGGML_LLAMAFILE=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_COMMON=ON -DLLAMA_OPENSSL=OFF \
${RBEE_LLAMA_CMAKE_FLAGS:-}"

prefix=$RBEE_LLAMA_DIR/install
stamp=$prefix/.rbee-build-flags
if [ -f "$prefix/lib/libllama.a" ] && [ -f "$prefix/lib/libllama-common.a" ] && [ -f "$prefix/include/internal/llama-grammar.h" ] \
  && [ "$(cat "$stamp" 2>/dev/null)" = "$flags" ] \
  && { [ $want_tools -eq 0 ] || [ -x "$prefix/bin/llama-bench" ]; }; then
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

build=$RBEE_LLAMA_DIR/build
# shellcheck disable=SC2086
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_INSTALL_PREFIX="$prefix" $flags >/dev/null
# llama-common: chat templates (Jinja), for the CRbeeChat target.
targets="llama ggml ggml-base ggml-cpu llama-common llama-common-base"
[ $want_tools -eq 1 ] && targets="$targets llama-bench llama-server"
log "building llama.cpp ($targets); a few minutes on 2 cores, more with the tools"
# shellcheck disable=SC2086
cmake --build "$build" -j"$(nproc)" --target $targets
mkdir -p "$prefix/lib" "$prefix/include" "$prefix/bin"
for lib in $(find "$build" -name 'lib*.a'); do cp "$lib" "$prefix/lib/"; done
cp "$src"/include/llama.h "$src"/include/llama-cpp.h "$src"/ggml/include/*.h "$prefix/include/"
mkdir -p "$prefix/include/common/jinja"
cp "$src"/common/*.h "$prefix/include/common/"
cp "$src"/common/jinja/*.h "$prefix/include/common/jinja/"
# The grammar parser's own header (not public API), for CRbeeChat's grammar check with positions.
mkdir -p "$prefix/include/internal"
cp "$src"/src/llama-grammar.h "$prefix/include/internal/"
if [ $want_tools -eq 1 ]; then cp "$build/bin/llama-bench" "$build/bin/llama-server" "$prefix/bin/"; fi
echo "$flags" > "$stamp"
log "llama.cpp installed in $prefix"
