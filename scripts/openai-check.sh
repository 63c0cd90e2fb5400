#!/usr/bin/env bash
# Acceptance 1 of the queen: the official `openai` Python client (pinned, from PyPI) streams and
# non-streams through a real queen, which starts its own local hive and worker on the instruct
# model, and structured output comes back valid against its schema (Python's jsonschema).
# Afterwards no queen, hive or worker may be left. Usage: openai-check.sh [BIN_DIR]
. "$(dirname "$0")/common.sh"
cd "$RBEE_REPO"
bin=${1:-$(swift build --show-bin-path)}
if ! python3 -c "import openai, sys; sys.exit(openai.__version__ != '$OPENAI_PYTHON_VERSION')" 2>/dev/null; then
  log "installing openai==$OPENAI_PYTHON_VERSION"
  python3 -m pip install -q "openai==$OPENAI_PYTHON_VERSION"
fi
if ! python3 -c "import jsonschema, sys; from importlib.metadata import version; sys.exit(version('jsonschema') != '$JSONSCHEMA_VERSION')" 2>/dev/null; then
  log "installing jsonschema==$JSONSCHEMA_VERSION"
  python3 -m pip install -q "jsonschema==$JSONSCHEMA_VERSION"
fi
home=$(mktemp -d /tmp/rbee-openai-check.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/queen-rbee" --port "$port" --home "$home" --local-hive-port 0 --model-dir "$RBEE_MODEL_DIR" >"$home/queen.log" 2>&1 &
queen=$!
cleanup() { kill "$queen" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
if ! python3 scripts/openai_client_check.py "http://127.0.0.1:$port/v1" "file:$RBEE_INSTRUCT_MODEL" "${SMOLLM_FILE%.gguf}"; then
  tail -30 "$home/queen.log" >&2
  exit 1
fi
# Tool calls: the base model with Qwen3's template (from the pinned llama.cpp tree) set through
# the queen, through the openai client, then LangChain's langchain-openai in its own virtualenv.
if ! python3 scripts/openai_tools_check.py "http://127.0.0.1:$port/v1" "file:$RBEE_BASE_MODEL" "${GEMMA_FILE%.gguf}" \
  "$RBEE_LLAMA_DIR/src/models/templates/Qwen-Qwen3-0.6B.jinja" "${SMOLLM_FILE%.gguf}"; then
  tail -30 "$home/queen.log" >&2
  exit 1
fi
langchain_venv=$RBEE_CACHE/venv-langchain-openai-$LANGCHAIN_OPENAI_VERSION
if ! "$langchain_venv/bin/python3" -c "import langchain_openai" 2>/dev/null; then
  log "installing langchain-openai==$LANGCHAIN_OPENAI_VERSION into $langchain_venv"
  rm -rf "$langchain_venv"
  python3 -m venv "$langchain_venv"
  "$langchain_venv/bin/pip" install -q --disable-pip-version-check "langchain-openai==$LANGCHAIN_OPENAI_VERSION"
fi
if ! "$langchain_venv/bin/python3" scripts/langchain_check.py "http://127.0.0.1:$port/v1" "${GEMMA_FILE%.gguf}"; then
  tail -30 "$home/queen.log" >&2
  exit 1
fi
kill -TERM "$queen"
wait "$queen" || { log "queen exited with $?"; exit 1; }
trap - EXIT
left=$(pgrep -af -- "$home" || true)
if [ -n "$left" ]; then
  log "left behind: $left"
  exit 1
fi
log "openai check: passed, nothing left running"
rm -rf "$home"
