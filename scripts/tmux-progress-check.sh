#!/usr/bin/env bash
# Acceptance 5 of the CLI: under tmux, `rbee infer` on a cold model shows live download and
# loading bars that end cleanly before the tokens start. The model comes from a local, throttled
# file server standing in for Hugging Face (HF_ENDPOINT); rbee starts its own queen and hive.
# Snapshots of the pane (tmux capture-pane) are checked. Usage: tmux-progress-check.sh [BIN_DIR]
. "$(dirname "$0")/common.sh"
cd "$RBEE_REPO"
command -v tmux >/dev/null || need_apt tmux:tmux
bin=${1:-$(swift build --show-bin-path)}
work=$(mktemp -d /tmp/rbee-tmux-check.XXXXXX)
mkdir -p "$work/hf/google/gemma-3-270m/resolve/main" "$work/snapshots"
ln -s "$RBEE_BASE_MODEL" "$work/hf/google/gemma-3-270m/resolve/main/$GEMMA_FILE"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
server_port=$(free_port)
python3 scripts/throttled_file_server.py "$server_port" "$work/hf" 80 &
server=$!
session=rbee-check-$$
cleanup() { tmux kill-session -t "$session" 2>/dev/null || true; kill "$server" 2>/dev/null || true; [ -n "${RBEE_KEEP_SNAPSHOTS:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
command="RBEE_HOME=$work/home HF_ENDPOINT=http://127.0.0.1:$server_port RBEE_QUEEN_URL=http://127.0.0.1:$(free_port)"
command+=" $bin/rbee infer -m hf:google/gemma-3-270m:$GEMMA_FILE --max-tokens 24 --temperature 0 'The capital of France is'; echo RBEE_EXIT=\$?; sleep 60"
tmux new-session -d -s "$session" -x 150 -y 30 "$command"
for i in $(seq 600); do
  tmux capture-pane -p -t "$session" > "$work/snapshots/$(printf %04d "$i")"
  grep -q RBEE_EXIT= "$work/snapshots/$(printf %04d "$i")" && break
  sleep 0.1
done
final=$(ls "$work/snapshots" | tail -1)
fail() { log "tmux check failed: $*"; cat "$work/snapshots/$final" >&2; exit 1; }
grep -q "RBEE_EXIT=0" "$work/snapshots/$final" || fail "rbee did not exit 0"
# Live bars: several distinct download percentages and layer counts were on screen.
downloads=$(cat "$work"/snapshots/* | grep -o 'downloading .*\] *[0-9]*%' | sort -u | wc -l)
loads=$(cat "$work"/snapshots/* | grep -o '[0-9]*/18 layers' | sort -u | wc -l)
[ "$downloads" -ge 3 ] || fail "expected a live download bar, saw $downloads distinct states"
[ "$loads" -ge 1 ] || fail "expected a loading bar"
# Clean end: no bar left on the final screen; the tokens start on their own line after 'loaded'.
grep -q '\[[#-]*\]' "$work/snapshots/$final" && fail "a progress bar is left on the screen"
grep -q "^loaded $GEMMA_FILE%.gguf\|^loaded ${GEMMA_FILE%.gguf} on localhost$" "$work/snapshots/$final" || fail "no clean 'loaded' line"
grep -q "tokens/s, time to first token" "$work/snapshots/$final" || fail "no final statistics line"
log "tmux check: $downloads download states and $loads loading states seen live; bars cleared before the tokens"
sed '/^$/d' "$work/snapshots/$final" | grep -v RBEE_EXIT >&2
