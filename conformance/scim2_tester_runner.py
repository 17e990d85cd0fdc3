#!/usr/bin/env python3
"""Run scim2-tester's ``check_server`` against a SCIM base URL and judge the results.

Usage: scim2_tester_runner.py BASE_URL [--json FILE] [--timeout SECONDS] [--quiet]
The bearer token is read from the SCIM_TOKEN environment variable.

Every check is printed on one line; a failed one is followed by its reason and the
HTTP requests it made. SUCCESS, COMPLIANT and ACCEPTABLE pass; DEVIATION, ERROR and
CRITICAL fail; SKIPPED is counted apart. There is no allow-list for this tool.

Exit status: 0 when nothing failed, 1 when a check failed, 2 when the tester crashed.
The last line is ``scim2-tester: P passed, F failed, S skipped``.
"""

import argparse
import collections
import json
import os
import sys
import time
from importlib.metadata import version

from exchanges import Recorder, print_exchanges

PASSING = {"SUCCESS", "COMPLIANT", "ACCEPTABLE"}
FAILING = {"DEVIATION", "ERROR", "CRITICAL"}


def group_of(tags):
    tags = sorted(tags or ())
    for tag in tags:
        if tag in ("service-provider-config", "resource-types", "schemas"):
            return "discovery:" + tag
    for tag in tags:
        if tag.startswith(("crud", "patch")):
            return tag
    return tags[0] if tags else "other"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base_url")
    ap.add_argument("--json", dest="json_path", help="write every result and its HTTP exchanges here")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
    ap.add_argument("--quiet", action="store_true", help="print failed checks only")
    args = ap.parse_args()

    from httpx2 import Client
    from scim2_client.engines.httpx2 import SyncSCIMClient
    from scim2_tester import check_server
    from scim2_tester.utils import CheckResult

    recorder = Recorder(args.base_url)
    recorder.hook_init(CheckResult)

    def on_response(response):
        response.read()
        request = response.request
        recorder.record(request.method, request.url, request.content, response.status_code, response.text)

    headers = {}
    token = os.environ.get("SCIM_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"

    started = time.monotonic()
    crash = None
    results = []
    try:
        http = Client(base_url=args.base_url, headers=headers, timeout=args.timeout,
                      event_hooks={"response": [on_response]})
        results = check_server(SyncSCIMClient(http))
    except Exception as exc:  # a crash of the tester itself
        crash = f"{type(exc).__name__}: {exc}"
    elapsed = time.monotonic() - started

    print(f"== scim2-tester {version('scim2-tester')} against {args.base_url}")
    counts = collections.Counter()
    per_group = collections.defaultdict(collections.Counter)
    rows = []
    for r in results:
        status = r.status.name
        outcome = "pass" if status in PASSING else "fail" if status in FAILING else "skip"
        counts[outcome] += 1
        group = group_of(r.tags)
        per_group[(r.resource_type or "-", group)][outcome] += 1
        exchanges = recorder.exchanges_of(r)
        rows.append({"status": status, "outcome": outcome, "title": r.title, "resource_type": r.resource_type,
                     "group": group, "reason": r.reason, "exchanges": exchanges})
        if outcome == "fail" or not args.quiet:
            label = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}[outcome]
            rt = f"[{r.resource_type}] " if r.resource_type else ""
            first = " ".join((r.reason or "").split("\n", 1)[0].split())
            print(f"  {label} {status:<10} {rt}{r.title}: {first[:200]}")
        if outcome == "fail":
            for line in (r.reason or "").splitlines()[1:]:
                print(f"      {line}")
            print_exchanges(exchanges)

    print("  per resource type and group (passed/total, skipped):")
    for (rt, group), c in sorted(per_group.items()):
        skipped = f"  skipped {c['skip']}" if c["skip"] else ""
        print(f"    {rt:<6} {group:<34} {c['pass']}/{c['pass'] + c['fail']}{skipped}")
    print(f"  runtime {elapsed:.1f}s, {len(recorder.exchanges)} HTTP requests")
    if crash:
        print(f"  CRASH: {crash}")

    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump({"tool": "scim2-tester", "version": version("scim2-tester"), "crash": crash,
                       "counts": dict(counts), "results": rows}, fh, indent=1, default=str)

    print(f"scim2-tester: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    if crash:
        return 2
    if not results:
        print("scim2-tester: no check ran", file=sys.stderr)
        return 2
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
