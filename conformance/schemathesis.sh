#!/usr/bin/env bash
# Fuzz the management API (/api/v1) against its own OpenAPI document with schemathesis (PyPI):
# no 5xx answers, and every answer conforms to the document (status codes, content types, bodies).
#
# Usage: conformance/schemathesis.sh
# Env:
#   ROLLCALL_BIN              binary to test (default: build and use target/release/rollcall)
#   PYTHON                    interpreter for the venv, >= 3.10 (default python3)
#   SCHEMATHESIS_MAX_TIME     time budget of the fuzzing run in s (default 120)
#   CONFORMANCE_OUT           where logs go (default target/conformance)
# Exit: schemathesis's exit status (0: no failure), 2 when the run itself broke.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/conformance"
VENV="$ROOT/.venv-schemathesis"
PYTHON="${PYTHON:-python3}"
OUT="${CONFORMANCE_OUT:-$ROOT/target/conformance}"
MAX_TIME="${SCHEMATHESIS_MAX_TIME:-120}"

say() { printf 'schemathesis: %s\n' "$*"; }
die() { printf 'schemathesis: error: %s\n' "$*" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/rollcall-schemathesis.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- venv with the pinned tool --------------------------------------------------------------
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" || die "cannot create $VENV"
stamp="$(cat "$HERE/schemathesis-requirements.txt" <("$VENV/bin/python" -V) | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$VENV/.installed" 2>/dev/null || true)" != "$stamp" ]; then
  say "installing schemathesis into $VENV"
  timeout 600 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$HERE/schemathesis-requirements.txt" || die "pip install failed"
  echo "$stamp" > "$VENV/.installed"
fi

# --- the binary and a server on a free port with a temp SQLite database ----------------------
if [ -n "${ROLLCALL_BIN:-}" ]; then
  BIN="$ROLLCALL_BIN"
else
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/rollcall"
  (cd "$ROOT" && cargo build --release -p rollcall --quiet) || die "cargo build failed"
fi
[ -x "$BIN" ] || die "no executable at $BIN"
mkdir -p "$OUT"
DB="sqlite://$WORK/rollcall.db"
port="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$port"
(
  while read -r var; do unset "$var"; done < <(compgen -e | grep '^ROLLCALL_' || true)
  exec "$BIN" --database "$DB" serve --listen "127.0.0.1:$port" --public-url "$BASE"
) > "$WORK/server.out" 2> "$OUT/schemathesis-server.log" &
SERVER_PID=$!
for _ in $(seq 1 150); do
  kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$OUT/schemathesis-server.log"; die "the server exited"; }
  if curl -fsS "$BASE/healthz" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
KEY="$("$BIN" --database "$DB" api-key create --name schemathesis | sed -n 's/^API key: *\([^ ]*\).*/\1/p')"
[ -n "$KEY" ] || die "could not create an API key"

# --- the run --------------------------------------------------------------------------------
# Checks: no 5xx; status codes, content types and bodies as the document says. Deleting API keys is
# left out: a generated request could revoke the key the run authenticates with.
say "fuzzing $BASE/api/v1 for up to ${MAX_TIME}s"
rc=0
cd "$WORK"   # schemathesis keeps a cache in the working directory
"$VENV/bin/schemathesis" run "$BASE/api/v1/openapi.json" \
  --header "Authorization: Bearer $KEY" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --exclude-operation-id revoke_api_key \
  --max-time "$MAX_TIME" \
  --workers 2 \
  --seed 1 \
  --no-color 2>&1 | tee "$OUT/schemathesis.log" || rc=$?
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  tail -n 20 "$OUT/schemathesis-server.log"
  die "the server died during the run"
fi
exit "$rc"
