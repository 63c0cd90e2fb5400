#!/usr/bin/env bash
# Fuzzes each daemon with schemathesis from its document in docs/openapi/ (with a token,
# shutdown routes excluded): no answer may be a 5xx, and every status, content type, header and
# body (each SSE frame's JSON too) must be one the document lists.
# Bounded: API_FUZZ_EXAMPLES examples per operation (default 15), API_FUZZ_SECONDS per daemon.
# API_FUZZ_ONLY=worker|hive|queen runs one; API_FUZZ_LOGS=DIR keeps the daemons' logs.
# Usage: scripts/api-conformance.sh [BIN_DIR]   (default: the debug build)
. "$(dirname "$0")/common.sh"
cd "$RBEE_REPO"
BIN=$(cd "${1:-$(swift build --show-bin-path)}" && pwd)
MODEL=$RBEE_DEFAULT_MODEL
EXAMPLES=${API_FUZZ_EXAMPLES:-15}
SECONDS_EACH=${API_FUZZ_SECONDS:-30}
VENV=$RBEE_CACHE/venv-schemathesis-$SCHEMATHESIS_VERSION
WORK=$(mktemp -d /tmp/rbee-fuzz.XXXXXX)
TOKEN="fuzz-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [[ ! -x $VENV/bin/st ]]; then
    log "installing schemathesis==$SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_health() {
    for _ in $(seq 1 300); do
        curl -fsS "$1/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    log "no answer from $1/health"
    return 1
}

export RBEE_API_TOKEN=$TOKEN
export HF_ENDPOINT=http://127.0.0.1:9  # nothing listens: downloads fail at once, never leave the machine
WORKER_PORT=$(free_port)
"$BIN/llm-worker-rbee" --model "$MODEL" --port "$WORKER_PORT" --parallel 2 --ctx-size 256 >"$WORK/worker.log" 2>&1 &
PIDS+=($!)
QUEEN_PORT=$(free_port)
"$BIN/queen-rbee" --port "$QUEEN_PORT" --home "$WORK/queen" --no-local-hive >"$WORK/queen.log" 2>&1 &
PIDS+=($!)
HIVE_PORT=$(free_port)
"$BIN/rbee-hive" --port "$HIVE_PORT" --home "$WORK/hive" --model-dir "$(dirname "$MODEL")" --download-attempts 1 \
    --queen-url "http://127.0.0.1:$QUEEN_PORT" --heartbeat-secs 1 >"$WORK/hive.log" 2>&1 &
PIDS+=($!)
for port in "$WORKER_PORT" "$HIVE_PORT" "$QUEEN_PORT"; do wait_health "http://127.0.0.1:$port"; done
# The model is in the hive's catalog (the documents' examples name it), and the queen knows
# the hive, before the run starts.
curl -fsS -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
    -d "{\"model_ref\":\"file:$MODEL\"}" "http://127.0.0.1:$HIVE_PORT/v1/models/download" >/dev/null
for _ in $(seq 1 100); do
    curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$QUEEN_PORT/v1/hives" | grep -q '"online"' && break
    sleep 0.1
done

status=0
for daemon in worker hive queen; do
    case $daemon in
        worker) port=$WORKER_PORT ;;
        hive) port=$HIVE_PORT ;;
        queen) port=$QUEEN_PORT ;;
    esac
    echo "== $daemon (docs/openapi/$daemon.yaml)"
    [[ -n ${API_FUZZ_ONLY:-} && $daemon != "$API_FUZZ_ONLY" ]] && continue
    "$VENV/bin/st" --no-color --config-file scripts/schemathesis.toml run "docs/openapi/$daemon.yaml" --url "http://127.0.0.1:$port" \
        -H "Authorization: Bearer $TOKEN" --exclude-path /v1/shutdown \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
        --max-examples "$EXAMPLES" --max-time "$SECONDS_EACH" --request-timeout 30 --workers 1 \
        --phases examples,coverage,fuzzing --seed 1 || status=1
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || { log "a daemon died during the run (pid $pid)"; status=1; }
    done
done
[[ -n ${API_FUZZ_LOGS:-} ]] && mkdir -p "$API_FUZZ_LOGS" && cp "$WORK"/*.log "$API_FUZZ_LOGS"/
if [[ $status != 0 ]]; then
    for log in worker hive queen; do echo "--- $log.log (tail)"; tail -n 20 "$WORK/$log.log"; done
fi
[[ $status == 0 ]] && log "api conformance: passed"
exit $status
