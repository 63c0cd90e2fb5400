#!/usr/bin/env bash
# The main job on a fresh machine: installs llama.cpp and the default model (Gemma 3 270M), builds
# the worker (release), starts it, shows its loading progress, streams one inference to stdout,
# then shuts the worker down.   Usage: scripts/demo.sh ["prompt"]
. "$(dirname "$0")/common.sh"
cd "$RBEE_REPO"
prompt=${1:-"Write a haiku about honey bees."}
scripts/fetch-llama.sh
model=$(scripts/fetch-model.sh)
relink_if_llama_changed release
log "building llm-worker-rbee (release; the first build takes several minutes)"
swift build -c release --product llm-worker-rbee
bin=$(swift build -c release --show-bin-path)/llm-worker-rbee
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" --model "$model" --port "$port" --log-level warning &
worker=$!
trap 'kill $worker 2>/dev/null || true' EXIT
python3 "$RBEE_REPO/scripts/stream_client.py" "http://127.0.0.1:$port" "$prompt"
curl -s -X POST "http://127.0.0.1:$port/v1/shutdown" >/dev/null || true
wait $worker
