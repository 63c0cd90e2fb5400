#!/usr/bin/env bash
# Benchmark (outside CI): the worker against llama.cpp's own tools, same model, same build of
# llama.cpp, same threads and the same kernel settings (no weight repacking, no flash attention:
# the worker's deterministic defaults).
#   1. single-stream decode tokens/s through the HTTP worker  vs  llama-bench tg   (target >= 0.95)
#   2. aggregate tokens/s, 4 and 8 concurrent streams  vs  llama-server, same --parallel (>= 1.0)
#   3. prompt reuse: time to the first token at turn 8 of a conversation, and after a shared
#      ~800-token system text  vs  llama-server with its default cache_prompt (<= 1.0)
#   4. structured output: decode tokens/s of a json_object request  vs  the same request
#      unconstrained, both sampled (>= 0.8)
# Usage: scripts/bench.sh [threads] [tokens]      Results: stdout and bench-results/latest.txt
# RBEE_BENCH_SECTIONS="1 4" runs only those sections (default: all).
. "$(dirname "$0")/common.sh"
cd "$RBEE_REPO"
threads=${1:-$(nproc)}
tokens=${2:-128}
ctx=1024
scripts/fetch-llama.sh --tools
scripts/fetch-model.sh >/dev/null
# The base model by default, as in the measurements in the README; RBEE_BENCH_MODEL=PATH another.
model=${RBEE_BENCH_MODEL:-$RBEE_BASE_MODEL}
relink_if_llama_changed release
swift build -c release --product llm-worker-rbee >&2
worker_bin=$(swift build -c release --show-bin-path)/llm-worker-rbee
tools=$RBEE_LLAMA_DIR/install/bin
mkdir -p bench-results
out=bench-results/latest.txt
: > "$out"
report() { echo "$*" | tee -a "$out"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() {  # url path
  for _ in $(seq 1 600); do curl -sf "$1$2" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "server at $1 did not become ready" >&2; return 1
}
json() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())$1)"; }
sections=" ${RBEE_BENCH_SECTIONS:-1 2 3 4} "
want() { [[ "$sections" == *" $1 "* ]]; }
median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }

report "model: $model"
report "threads: $threads, tokens per stream: $tokens, $(nproc) cores, llama.cpp from llama-cpp-python $LLAMA_CPP_PYTHON_VERSION"

run_worker() {  # parallel
  port=$(free_port)
  "$worker_bin" --model "$model" --port "$port" --threads "$threads" --parallel "$1" --ctx-size "$ctx" --log-level error &
  server=$!
  wait_ready "http://127.0.0.1:$port" /v1/ready && until curl -s "http://127.0.0.1:$port/v1/ready" | grep -q '"ready":true'; do sleep 0.1; done
  url=http://127.0.0.1:$port
}
run_llama_server() {  # parallel
  port=$(free_port)
  "$tools/llama-server" -m "$model" --port "$port" -t "$threads" -tb "$threads" -np "$1" -c $((ctx * $1)) -nr -fa off \
    --no-webui --log-disable >/dev/null 2>&1 &
  server=$!
  wait_ready "http://127.0.0.1:$port" /health
  url=http://127.0.0.1:$port
}
stop_server() { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; }

# 1. Single stream: llama-bench tg (pure decode, no sampling, no HTTP) and the worker's
# client-side decode rate, alternating, medians of 3.
if want 1; then
run_worker 4
python3 scripts/bench_client.py "$url" rbee 1 16 >/dev/null  # warm-up
single=(); bench=()
for _ in 1 2 3; do
  bench+=("$("$tools/llama-bench" -m "$model" -t "$threads" -p 0 -n "$tokens" -r 2 --repack 0 -fa off -o json 2>/dev/null \
    | python3 -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["n_gen"]>0][0]; print(r["avg_ts"])')")
  single+=("$(python3 scripts/bench_client.py "$url" rbee 1 "$tokens" | json '["stream_decode_tps"]')")
done
stop_server
bench_tps=$(median3 "${bench[@]}"); worker_tps=$(median3 "${single[@]}")
report "llama-bench tg$tokens: $(printf %.1f "$bench_tps") tokens/s (runs: ${bench[*]})"
report "worker single stream: $(printf %.1f "$worker_tps") tokens/s (runs: ${single[*]})"
report "RATIO single-stream worker/llama-bench: $(python3 -c "print(f'{$worker_tps/$bench_tps:.3f}')") (target >= 0.95)"
fi

# Aggregates: both servers stay loaded and the runs alternate (worker, llama-server, worker, ...),
# so drift on a shared machine (10-15 % between minutes here) hits both alike; medians of 5.
if want 2; then
for n in 4 8; do
  run_worker "$n"; worker_url=$url; worker_pid=$server
  run_llama_server "$n"; server_url=$url; server_pid=$server
  python3 scripts/bench_client.py "$worker_url" rbee "$n" 16 >/dev/null
  python3 scripts/bench_client.py "$server_url" llama-server "$n" 16 >/dev/null
  ws=(); ls=()
  for _ in 1 2 3 4 5; do
    w=$(python3 scripts/bench_client.py "$worker_url" rbee "$n" "$tokens"); report "  worker: $w"
    ws+=("$(echo "$w" | json '["aggregate_tps"]')")
    l=$(python3 scripts/bench_client.py "$server_url" llama-server "$n" "$tokens"); report "  llama-server: $l"
    ls+=("$(echo "$l" | json '["aggregate_tps"]')")
  done
  server=$worker_pid; stop_server; server=$server_pid; stop_server
  wa=$(median "${ws[@]}"); la=$(median "${ls[@]}")
  report "$n streams (median of 5, alternating): worker $(printf %.1f "$wa") tokens/s, llama-server $(printf %.1f "$la") tokens/s"
  report "RATIO aggregate $n streams worker/llama-server: $(python3 -c "print(f'{$wa/$la:.3f}')") (target >= 1.0)"
done
fi

# 3. Prompt reuse: 4 slots of 4096 tokens on both servers, llama-server with its default
# cache_prompt; runs alternate, each with its own texts, medians of 3.
if want 3; then
ctx=4096
run_worker 4; worker_url=$url; worker_pid=$server
run_llama_server 4; server_url=$url; server_pid=$server
for mode in turns shared; do
  field=$([ "$mode" = turns ] && echo turn8_ttft_ms || echo median_ttft_ms)
  ws=(); ls=()
  for run in 1 2 3; do
    w=$(python3 scripts/bench_prompt_reuse.py "$worker_url" rbee "$mode" "$run"); report "  worker: $w"
    ws+=("$(echo "$w" | json "[\"$field\"]")")
    l=$(python3 scripts/bench_prompt_reuse.py "$server_url" llama-server "$mode" "$run"); report "  llama-server: $l"
    ls+=("$(echo "$l" | json "[\"$field\"]")")
  done
  wm=$(median3 "${ws[@]}"); lm=$(median3 "${ls[@]}")
  report "prompt reuse $mode, $field (median of 3, alternating): worker $(printf %.1f "$wm") ms, llama-server $(printf %.1f "$lm") ms"
  report "RATIO prompt reuse $mode time to first token worker/llama-server: $(python3 -c "print(f'{$wm/$lm:.3f}')") (target <= 1.0)"
done
server=$worker_pid; stop_server; server=$server_pid; stop_server
fi

# 4. Structured output: the grammar's cost on one stream, json_object against the same sampled
# request without it, alternating, medians of 5.
if want 4; then
ctx=1024
run_worker 1
python3 scripts/bench_client.py "$url" rbee 1 16 json >/dev/null
fs=(); js=()
for _ in 1 2 3 4 5; do
  f=$(python3 scripts/bench_client.py "$url" rbee 1 "$tokens" free); report "  unconstrained: $f"
  fs+=("$(echo "$f" | json '["stream_decode_tps"]')")
  j=$(python3 scripts/bench_client.py "$url" rbee 1 "$tokens" json); report "  json_object: $j"
  js+=("$(echo "$j" | json '["stream_decode_tps"]')")
done
stop_server
fm=$(median "${fs[@]}"); jm=$(median "${js[@]}")
report "structured output decode (median of 5, alternating): json_object $(printf %.1f "$jm") tokens/s, unconstrained $(printf %.1f "$fm") tokens/s"
report "RATIO json_object/unconstrained decode: $(python3 -c "print(f'{$jm/$fm:.3f}')") (target >= 0.8)"
fi
