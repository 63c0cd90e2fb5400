#!/usr/bin/env bash
# Benchmark (outside CI): the cost of the queen hop. A release queen starts its local hive and a
# worker on the default model; then the same warm worker is called directly and through the
# queen, alternating, one stream at a time.
#   decode tokens/s through the queen / direct   (target >= 0.98)
#   time to first token added by the queen       (target < 5 ms, median of paired differences)
# Usage: scripts/bench-queen.sh [rounds] [tokens]      Results: stdout and bench-results/queen.txt
. "$(dirname "$0")/common.sh"
cd "$RBEE_REPO"
rounds=${1:-20}
tokens=${2:-128}
scripts/fetch-llama.sh
scripts/fetch-model.sh >/dev/null
# The base model by default, as in the measurements in the README; RBEE_BENCH_MODEL=PATH another.
model=${RBEE_BENCH_MODEL:-$RBEE_BASE_MODEL}
relink_if_llama_changed release
swift build -c release --product queen-rbee >&2
swift build -c release --product rbee-hive >&2
swift build -c release --product llm-worker-rbee >&2
bin=$(swift build -c release --show-bin-path)
home=$(mktemp -d /tmp/rbee-bench-queen.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/queen-rbee" --port "$port" --home "$home" --local-hive-port 0 --model-dir "$RBEE_MODEL_DIR" >"$home/queen.log" 2>&1 &
queen=$!
trap 'kill $queen 2>/dev/null; wait $queen 2>/dev/null; rm -rf "$home"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
id=$(basename "$model" .gguf)
# Warm-up through the queen: starts the hive and the worker, and loads the model.
curl -sf "http://127.0.0.1:$port/v2/tasks" -d "{\"model\":\"file:$model\",\"prompt\":\"warm up\",\"max_tokens\":8,\"stream\":false}" >/dev/null
worker=$(curl -sf "http://127.0.0.1:$port/v1/workers" | python3 -c 'import json,sys; print(json.load(sys.stdin)["workers"][0]["url"])')
mkdir -p bench-results
echo "queen hop, $rounds alternating rounds, $tokens tokens, greedy, one stream; worker $worker" | tee bench-results/queen.txt
python3 scripts/bench_queen_client.py "$worker" "http://127.0.0.1:$port" "$id" "$rounds" "$tokens" | tee -a bench-results/queen.txt
