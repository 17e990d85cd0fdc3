#!/usr/bin/env bash
# Starts the rollcall binary the way the packaging starts it, and checks /healthz and /readyz:
#  - deploy/Containerfile: its ENV, ENTRYPOINT and CMD, and its HEALTHCHECK command run as written;
#  - deploy/rollcall.service: its Environment=, WorkingDirectory= and ExecStart=;
# then `systemd-analyze verify` on the unit when systemd-analyze is installed.
# This machine cannot pull base images, so the image itself is not built here: this checks what the
# image and the unit would run. Three things are changed, and only these, so that the check runs
# beside anything else: /usr/local/bin/rollcall is $ROLLCALL_BIN (default: the debug build),
# /var/lib/rollcall is a temporary directory, and port 8080 is a free port.
#
#   scripts/deploy-check.sh                     # builds nothing; set ROLLCALL_BIN or `cargo build -p rollcall` first
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BIN="${ROLLCALL_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/rollcall}"
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
[ -x "$BIN" ] || { echo "deploy-check: no binary at $BIN (cargo build -p rollcall, or set ROLLCALL_BIN)" >&2; exit 2; }
command -v curl > /dev/null || { echo "deploy-check: curl is needed" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/rollcall-deploy-check.XXXXXX")"
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The three substitutions, on one word or line.
PORT=""
STATE=""
subst() {
  sed -e "s#/usr/local/bin/rollcall#$BIN#g" -e "s#/var/lib/rollcall#$STATE#g" -e "s#:8080#:$PORT#g"
}

fail() {
  echo "deploy-check: FAILED: $*" >&2
  [ -f "$WORK/log" ] && tail -n 20 "$WORK/log" >&2
  exit 1
}

# start NAME DIR ENV... -- ARGV...: runs ARGV in DIR with only ENV (and PATH), as a service
# manager would, and waits for /healthz.
start() {
  local name=$1 dir=$2; shift 2
  local env=()
  while [ "$1" != "--" ]; do env+=("$1"); shift; done
  shift
  echo "deploy-check: $name: (cd $dir && env -i ${env[*]} $*)"
  (cd "$dir" && exec env -i PATH=/usr/bin:/bin "${env[@]}" "$@") > "$WORK/log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$PORT/healthz" > /dev/null 2>&1; then return 0; fi
    kill -0 "$PID" 2>/dev/null || fail "$name: the process exited"
    sleep 0.1
  done
  fail "$name: /healthz did not answer within 10 s"
}

check_up() {
  local name=$1
  [ "$(curl -fsS "http://127.0.0.1:$PORT/healthz")" = ok ] || fail "$name: /healthz"
  curl -fsS "http://127.0.0.1:$PORT/readyz" > /dev/null || fail "$name: /readyz"
  echo "deploy-check: $name: /healthz and /readyz answer 200"
}

stop() {
  local name=$1 rc=0
  kill -TERM "$PID"
  wait "$PID" || rc=$?
  PID=""
  [ "$rc" -eq 0 ] || fail "$name: exit status $rc after SIGTERM"
  echo "deploy-check: $name: stopped cleanly on SIGTERM"
}

# --- deploy/Containerfile -------------------------------------------------------------------------
# The runtime stage's lines (after the last FROM).
runtime="$(awk '/^FROM /{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' deploy/Containerfile)"
env_line="$(grep '^ENV ' <<< "$runtime" | sed 's/^ENV //')"
workdir="$(grep '^WORKDIR ' <<< "$runtime" | sed 's/^WORKDIR //')"
json_words() { python3 -c 'import json,sys; print("\n".join(json.loads(sys.stdin.read())))'; }
mapfile -t entrypoint < <(grep '^ENTRYPOINT ' <<< "$runtime" | sed 's/^ENTRYPOINT //' | json_words)
mapfile -t cmd < <(grep '^CMD ' <<< "$runtime" | sed 's/^CMD //' | json_words)
healthcheck="$(grep '^HEALTHCHECK ' <<< "$runtime" | sed 's/.* CMD //')"
[ -n "$env_line" ] && [ -n "$workdir" ] && [ "${#entrypoint[@]}" -gt 0 ] && [ -n "$healthcheck" ] \
  || fail "deploy/Containerfile: ENV, WORKDIR, ENTRYPOINT or HEALTHCHECK not found"
grep -q '^USER ' <<< "$runtime" || fail "deploy/Containerfile: the runtime image has no USER"

PORT=$(free_port)
STATE="$WORK/container/var/lib/rollcall"
mkdir -p "$STATE" && chmod 0700 "$STATE"
read -r -a container_env <<< "$(subst <<< "$env_line")"
mapfile -t argv < <(printf '%s\n' "${entrypoint[@]}" "${cmd[@]}" | subst)
start "Containerfile" "$(subst <<< "$workdir")" "${container_env[@]}" -- "${argv[@]}"
check_up "Containerfile"
(cd "$STATE" && sh -c "$(subst <<< "$healthcheck")") > /dev/null || fail "Containerfile: the HEALTHCHECK command failed"
echo "deploy-check: Containerfile: the HEALTHCHECK command succeeds"
[ -f "$STATE/rollcall.db" ] || fail "Containerfile: no database in the volume"
[ -f "$STATE/rollcall-first-token" ] || fail "Containerfile: JSON logs: the first token is not in the volume"
grep -q '"message":"rollcall serving"' "$WORK/log" || fail "Containerfile: the log is not JSON"
stop "Containerfile"

# --- deploy/rollcall.service ----------------------------------------------------------------------
PORT=$(free_port)
STATE="$WORK/systemd/var/lib/rollcall"
mkdir -p "$STATE" && chmod 0700 "$STATE"   # StateDirectory=
unit_env=()
while IFS= read -r line; do unit_env+=("$line"); done < <(grep '^Environment=' deploy/rollcall.service | sed 's/^Environment=//' | subst)
unit_dir="$(grep '^WorkingDirectory=' deploy/rollcall.service | sed 's/^WorkingDirectory=//' | subst)"
read -r -a exec_start <<< "$(grep '^ExecStart=' deploy/rollcall.service | sed 's/^ExecStart=//' | subst)"
[ "${#unit_env[@]}" -gt 0 ] && [ -n "$unit_dir" ] && [ "${#exec_start[@]}" -gt 0 ] \
  || fail "deploy/rollcall.service: Environment=, WorkingDirectory= or ExecStart= not found"
start "rollcall.service" "$unit_dir" "${unit_env[@]}" -- "${exec_start[@]}"
check_up "rollcall.service"
[ -f "$STATE/rollcall.db" ] && [ -f "$STATE/rollcall-secrets.key" ] || fail "rollcall.service: state not in the StateDirectory"
stop "rollcall.service"
# What `rollcall doctor` makes of it afterwards, run the same way.
(cd "$unit_dir" && env -i PATH=/usr/bin:/bin "${unit_env[@]}" "$BIN" doctor) || fail "rollcall.service: rollcall doctor failed"

if command -v systemd-analyze > /dev/null; then
  # verify needs ExecStart's binary to exist: the unit as installed, with the binary built here.
  mkdir -p "$WORK/unit"
  sed "s#/usr/local/bin/rollcall#$BIN#g" deploy/rollcall.service > "$WORK/unit/rollcall.service"
  systemd-analyze verify "$WORK/unit/rollcall.service" || fail "systemd-analyze verify deploy/rollcall.service"
  echo "deploy-check: systemd-analyze verify deploy/rollcall.service: ok"
else
  echo "deploy-check: systemd-analyze is not installed: the unit's syntax is not verified"
fi
echo "deploy-check: ok"
