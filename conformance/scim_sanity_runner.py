#!/usr/bin/env python3
"""Run scim-sanity's live probe against a SCIM base URL and judge it against an allow-list.

Usage: scim_sanity_runner.py BASE_URL [--allow FILE] [--json FILE] [--timeout SECONDS] [--compat] [--quiet]
The bearer token is read from the SCIM_TOKEN environment variable.

scim-sanity emits rows named after a request ("PATCH /Groups/{id} add member"); the
rows of one name form a check. A check
  passes  when it has a PASS row and no FAIL or ERROR row (WARN rows are printed);
  fails   when it has a FAIL or ERROR row, only WARN rows, or is SKIPped outside the
          optional agent-extension phases (a skip there means the lifecycle broke off);
  is left out when it is a SKIP of the Agent / AgenticApplication phases
          (draft agent extension, which Rollcall does not implement).
A failed check named in the allow-list is reported as ALLOWED and does not fail the run,
unless the server answered one of its requests with a 5xx status, or with a status outside
the entry's optional ``[STATUS,...]`` list.

Exit status: 0 when no failure is outside the allow-list, 1 otherwise, 2 when the probe
crashed or the allow-list is malformed.
The last line is ``scim-sanity: P passed, F failed, A allowed``.
"""

import argparse
import collections
import json
import os
import re
import sys
import time
from importlib.metadata import version

from exchanges import Recorder, print_exchanges


STATUS_SUFFIX = re.compile(r"^(?P<name>.*?)\s+\[(?P<codes>\d{3}(?:\s*,\s*\d{3})*)\]$")


def load_allow_list(path):
    """Return {check name: (reason, allowed HTTP statuses or None)}.

    A line is ``CHECK NAME [STATUS,...]  # reason``; the bracketed statuses are optional and,
    when given, every response of the check must have one of them for the failure to be allowed.
    """
    allowed = {}
    with open(path, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, reason = line.partition("#")
            name, reason = name.strip(), reason.strip()
            if not sep or not reason or not name:
                raise ValueError(f"{path}:{number}: entry without a '# reason' comment: {line!r}")
            codes = None
            match = STATUS_SUFFIX.match(name)
            if match:
                name = match["name"]
                codes = {int(c) for c in match["codes"].split(",")}
            allowed[name] = (reason, codes)
    return allowed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base_url")
    ap.add_argument("--allow", help="allow-list file: 'CHECK NAME [STATUS,...]  # reason' per line")
    ap.add_argument("--json", dest="json_path", help="write every check and its HTTP exchanges here")
    ap.add_argument("--timeout", type=int, default=10, help="per-request timeout in seconds")
    ap.add_argument("--compat", action="store_true", help="compat mode instead of strict")
    ap.add_argument("--quiet", action="store_true", help="print failed checks only")
    args = ap.parse_args()

    try:
        allowed = load_allow_list(args.allow) if args.allow else {}
    except (OSError, ValueError) as exc:
        print(f"scim-sanity: bad allow-list: {exc}", file=sys.stderr)
        return 2

    from scim_sanity.http_client import SCIMClient
    from scim_sanity.probe.report import ProbeResult
    from scim_sanity.probe.runner import run_probe_api

    recorder = Recorder(args.base_url)
    recorder.hook_init(ProbeResult)
    original_request = SCIMClient._request

    def recording_request(client, method, path, payload=None, extra_headers=None):
        response = original_request(client, method, path, payload, extra_headers)
        body = json.dumps(payload) if payload is not None else None
        recorder.record(method, client.base_url + path, body, response.status_code, response.body)
        return response

    SCIMClient._request = recording_request

    started = time.monotonic()
    crash = None
    report = {}
    try:
        report = run_probe_api(args.base_url, token=os.environ.get("SCIM_TOKEN") or None,
                               strict=not args.compat, timeout=args.timeout)
    except Exception as exc:  # a crash of the probe itself
        crash = f"{type(exc).__name__}: {exc}"
    elapsed = time.monotonic() - started

    # The probe's own result objects, in order, carry the exchanges; group them by check.
    exchanges = collections.defaultdict(list)
    for result, made in recorder.claimed():
        exchanges[(getattr(result, "phase", ""), getattr(result, "name", ""))].extend(made)

    checks = collections.OrderedDict()
    for row in report.get("results", []):
        checks.setdefault((row.get("phase", ""), row.get("name", "")), []).append(row)

    mode = "compat" if args.compat else "strict"
    print(f"== scim-sanity {version('scim-sanity')} ({mode}) against {args.base_url}")
    counts = collections.Counter()
    rows = []
    seen = set()
    for (phase, name), group in checks.items():
        kinds = {r.get("status") for r in group}
        if kinds <= {"skip"} and "Agent" in phase:
            outcome = "skip"
        elif "pass" in kinds and not kinds & {"fail", "error"}:
            outcome = "pass"
        else:
            outcome = "allowed" if name in allowed else "fail"
        made = exchanges.get((phase, name), [])
        not_allowed = None
        if name in allowed:
            codes = allowed[name][1]
            statuses = [int(ex["status"]) for ex in made]
            if any(code >= 500 for code in statuses):
                not_allowed = "the server answered 5xx"
            elif codes and (not statuses or any(code not in codes for code in statuses)):
                not_allowed = f"the server answered {statuses}, the allow-list expects {sorted(codes)}"
        if outcome == "allowed" and not_allowed:
            outcome = "fail"
        seen.add(name)
        counts[outcome] += 1
        messages = []
        for r in group:
            text = " ".join(str(r.get("message") or "").split())
            status = str(r.get("status", "?")).upper()
            if status == "PASS":
                messages.append(text)
            else:
                messages.append(f"{status}: {text}" if text else status)
        rows.append({"phase": phase, "name": name, "outcome": outcome, "rows": group, "exchanges": made})
        if outcome in ("fail", "allowed") or not args.quiet:
            label = {"pass": "PASS", "fail": "FAIL", "allowed": "ALLOWED", "skip": "SKIP"}[outcome]
            print(f"  {label:<7} {name}: {'; '.join(m for m in messages if m)[:220]}")
        if outcome == "allowed":
            print(f"          allowed because: {allowed[name][0]}")
        elif outcome == "fail" and not_allowed:
            print(f"          allow-listed, but not allowed: {not_allowed}")
        if outcome in ("fail", "allowed"):
            print_exchanges(made, indent="          ")

    for name in allowed:
        if name not in seen:
            print(f"  note: allow-listed check {name!r} did not run; the entry may be stale")
        elif all(r["outcome"] == "pass" for r in rows if r["name"] == name):
            print(f"  note: allow-listed check {name!r} passes now; consider removing the entry")
    for issue in report.get("issues", []):
        print(f"  scim-sanity issue {issue.get('priority')}: {issue.get('title')}")
    print(f"  runtime {elapsed:.1f}s, {len(recorder.exchanges)} HTTP requests")
    if crash:
        print(f"  CRASH: {crash}")

    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump({"tool": "scim-sanity", "version": version("scim-sanity"), "mode": mode, "crash": crash,
                       "counts": dict(counts), "checks": rows, "issues": report.get("issues", [])},
                      fh, indent=1, default=str)

    print(f"scim-sanity: {counts['pass']} passed, {counts['fail']} failed, {counts['allowed']} allowed")
    if crash:
        return 2
    if not checks:
        print("scim-sanity: no check ran", file=sys.stderr)
        return 2
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
