#!/usr/bin/env bash
# Run the external SCIM 2.0 checkers scim2-tester and scim-sanity against a throw-away Rollcall.
#
# Usage: conformance/run.sh            (from anywhere; see conformance/README.md)
# Env:
#   ROLLCALL_BIN            binary to test (default: build and use target/release/rollcall)
#   PYTHON                  interpreter for the venv, >= 3.11 (default python3)
#   CONFORMANCE_OUT         where results go (default target/conformance): JSON per tool, logs
#   CONFORMANCE_QUIET=1     print failed checks only
#   CONFORMANCE_TESTER_TIMEOUT / CONFORMANCE_SANITY_TIMEOUT   wall-clock limits in s (300 / 180)
#
# Exit: 0 when every scim2-tester check passed and every scim-sanity failure is in
# conformance/allowed-scim-sanity-failures.txt; 1 when a check failed; 2 when the run itself broke.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/conformance"
VENV="$ROOT/.venv-conformance"
PYTHON="${PYTHON:-python3}"
OUT="${CONFORMANCE_OUT:-$ROOT/target/conformance}"
TESTER_TIMEOUT="${CONFORMANCE_TESTER_TIMEOUT:-300}"
SANITY_TIMEOUT="${CONFORMANCE_SANITY_TIMEOUT:-180}"
QUIET=()
if [ "${CONFORMANCE_QUIET:-0}" = 1 ]; then QUIET=(--quiet); fi

say() { printf 'conformance: %s\n' "$*"; }
die() { printf 'conformance: error: %s\n' "$*" >&2; exit 2; }

WORK=""
SERVER_PID=""
TOOL_PID=""
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
cleanup() {
  if [ -n "$TOOL_PID" ]; then
    kill -TERM "$TOOL_PID" 2>/dev/null || true   # timeout(1) passes it on to the checker
    wait "$TOOL_PID" 2>/dev/null || true
  fi
  stop_server
  if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- Python venv with the pinned checkers -------------------------------------------------
setup_venv() {
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is older than 3.11 (set PYTHON=...)"
  if [ -d "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    rm -rf "$VENV"   # left by another interpreter
  fi
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" || die "cannot create $VENV"
  local stamp
  stamp="$(cat "$HERE/requirements.txt" <("$VENV/bin/python" -V) | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$VENV/.installed" 2>/dev/null || true)" != "$stamp" ]; then
    say "installing pinned checkers into $VENV"
    timeout 600 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
      -r "$HERE/requirements.txt" || die "pip install failed"
    "$VENV/bin/python" -m pip check --disable-pip-version-check >/dev/null \
      || { "$VENV/bin/python" -m pip check; die "conformance/requirements.txt is incomplete"; }
    echo "$stamp" > "$VENV/.installed"
  fi
}

# --- the binary ---------------------------------------------------------------------------
find_binary() {
  if [ -n "${ROLLCALL_BIN:-}" ]; then
    BIN="$ROLLCALL_BIN"
  else
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/rollcall"
    say "building the release binary (cargo build --release -p rollcall)"
    (cd "$ROOT" && cargo build --release -p rollcall --quiet) || die "cargo build failed"
  fi
  [ -x "$BIN" ] || die "no executable at $BIN"
}

# --- a server on a free port with a temp SQLite database ---------------------------------
free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
healthy() {
  "$VENV/bin/python" - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}
start_server() {
  local attempt port db
  for attempt in 1 2 3; do
    port="$(free_port)"
    db="$WORK/rollcall-$attempt.db"
    : > "$WORK/server.out"
    (
      # The server must see only the flags below, not a developer's ROLLCALL_* settings.
      while read -r var; do unset "$var"; done < <(compgen -e | grep '^ROLLCALL_' || true)
      exec "$BIN" --database "sqlite://$db" serve --listen "127.0.0.1:$port" \
        --public-url "http://127.0.0.1:$port"
    ) > "$WORK/server.out" 2> "$OUT/server.log" &
    SERVER_PID=$!
    for _ in $(seq 1 150); do   # up to 30 s
      if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
      if grep -q '^Bearer token:' "$WORK/server.out" && healthy "http://127.0.0.1:$port"; then
        BASE_URL="$(sed -n 's/^SCIM base URL: *//p' "$WORK/server.out" | head -n1)"
        TOKEN="$(sed -n 's/^Bearer token: *\([^ ]*\).*/\1/p' "$WORK/server.out" | head -n1)"
        [ -n "$BASE_URL" ] && [ -n "$TOKEN" ] || die "could not read base URL and token from the server's output"
        say "server pid $SERVER_PID, SCIM base URL $BASE_URL"
        return 0
      fi
      sleep 0.2
    done
    stop_server
    echo "--- server stdout (attempt $attempt)"; cat "$WORK/server.out"
    echo "--- server log (last 20 lines)"; tail -n 20 "$OUT/server.log"
  done
  die "the server did not come up"
}

# --- the checkers ------------------------------------------------------------------------
declare -A RC LAST
run_tool() { # name wall-seconds command...
  local name="$1" wall="$2"; shift 2
  echo
  # In the background, so that a signal to this script is handled at once (see cleanup).
  SCIM_TOKEN="$TOKEN" timeout --kill-after=10 "$wall" "$@" > "$OUT/$name.log" 2>&1 &
  TOOL_PID=$!
  local rc=0
  wait "$TOOL_PID" || rc=$?
  TOOL_PID=""
  cat "$OUT/$name.log"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then say "$name did not finish within ${wall}s"; fi
  RC[$name]="$rc"
  LAST[$name]="$(grep -E "^$name: [0-9]+ passed" "$OUT/$name.log" | tail -n1 || true)"
}

mkdir -p "$OUT"
(cd "$OUT" && rm -f scim2-tester.json scim-sanity.json scim2-tester.log scim-sanity.log server.log)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rollcall-conformance.XXXXXX")"
setup_venv
find_binary
start_server

run_tool scim2-tester "$TESTER_TIMEOUT" "$VENV/bin/python" "$HERE/scim2_tester_runner.py" "$BASE_URL" \
  --json "$OUT/scim2-tester.json" "${QUIET[@]}"
run_tool scim-sanity "$SANITY_TIMEOUT" "$VENV/bin/python" "$HERE/scim_sanity_runner.py" "$BASE_URL" \
  --allow "$HERE/allowed-scim-sanity-failures.txt" --json "$OUT/scim-sanity.json" "${QUIET[@]}"

echo
status=0
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  say "the server died during the run; last lines of its log:"
  tail -n 20 "$OUT/server.log"
  status=2
fi
stop_server

# Totals over both tools: allowed scim-sanity failures and skipped checks count as skipped.
read -r t_pass t_fail t_skip < <(sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/;t;s/.*/0 0 0/' <<<"${LAST[scim2-tester]:-}")
read -r s_pass s_fail s_allowed < <(sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) allowed$/\1 \2 \3/;t;s/.*/0 0 0/' <<<"${LAST[scim-sanity]:-}")
broken=0   # a tool that crashed or timed out counts as one failure in the totals
for name in scim2-tester scim-sanity; do
  rc="${RC[$name]}"
  if [ "$rc" = 1 ]; then
    [ "$status" = 0 ] && status=1
    say "$name: FAILED (${LAST[$name]#"$name: "})"
  elif [ "$rc" != 0 ]; then
    status=2
    broken=$((broken + 1))
    say "$name: BROKEN (exit $rc) ${LAST[$name]:+(${LAST[$name]#"$name: "})}"
  else
    say "$name: ok (${LAST[$name]#"$name: "})"
  fi
done
say "results in $OUT"
echo "conformance: $((t_pass + s_pass)) passed, $((t_fail + s_fail + broken)) failed, $((t_skip + s_allowed)) skipped"
exit "$status"
