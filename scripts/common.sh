# Sourced by the other scripts: pinned versions and cache locations.
set -euo pipefail
RBEE_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
. "$RBEE_REPO/scripts/versions.env"
RBEE_CACHE=${RBEE_CACHE:-$HOME/.cache/rbee}
RBEE_LLAMA_DIR=${RBEE_LLAMA_DIR:-$RBEE_CACHE/llama.cpp-$LLAMA_CPP_PYTHON_VERSION}
RBEE_MODEL_DIR=${RBEE_MODEL_DIR:-$RBEE_CACHE/models}
# The project's two models (scripts/fetch-model.sh): the instruction-tuned one answers chats, the
# base one continues text. RBEE_DEFAULT_MODEL (a GGUF path; either, or any other) is what the main
# job runs, the instruct model unless set.
RBEE_BASE_MODEL=$RBEE_MODEL_DIR/$GEMMA_FILE
RBEE_INSTRUCT_MODEL=$RBEE_MODEL_DIR/$SMOLLM_FILE
RBEE_DEFAULT_MODEL=${RBEE_DEFAULT_MODEL:-$RBEE_INSTRUCT_MODEL}
export RBEE_CACHE RBEE_LLAMA_DIR RBEE_MODEL_DIR RBEE_BASE_MODEL RBEE_INSTRUCT_MODEL RBEE_DEFAULT_MODEL

log() { printf '[rbee] %s\n' "$*" >&2; }

# The Swift toolchain lives in /opt/swift on the project's machines; a login shell may not have it.
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  PATH=/opt/swift/usr/bin:$PATH
fi

# SwiftPM does not see the static llama.cpp libraries change (a rebuild with other flags), so
# drop our linked products when the libraries are newer: the next build links them again.
relink_if_llama_changed() {
  local config=$1 bin stamp=$RBEE_LLAMA_DIR/install/.rbee-build-flags
  bin=$(swift build -c "$config" --show-bin-path)
  for product in llm-worker-rbee rbeePackageTests.xctest; do
    if [ -e "$bin/$product" ] && [ "$stamp" -nt "$bin/$product" ]; then rm -f "$bin/$product"; fi
  done
}

# Debian packages, installed only when a command is missing.
need_apt() {
  local missing=()
  local pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}
