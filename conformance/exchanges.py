"""HTTP exchange recording shared by the conformance runners.

Both checkers build result objects one after another while they talk to the
server. ``Recorder`` keeps every request/response pair in order and, each time a
result object is created, hands it the exchanges made since the previous one, so
a failed check can be printed together with the requests that led to it.
"""

import json

BODY_LIMIT = 1500


def _short_body(text, limit=BODY_LIMIT):
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.strip()
    if not text:
        return ""
    try:
        text = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Recorder:
    def __init__(self, base_url):
        self.base_url = base_url.rstrip("/")
        self.exchanges = []
        self._mark = 0
        self._by_result = {}

    def record(self, method, url, request_body, status, response_body):
        url = str(url)
        if url.startswith(self.base_url):
            url = url[len(self.base_url):] or "/"
        self.exchanges.append({
            "method": method,
            "path": url,
            "request": _short_body(request_body),
            "status": status,
            "response": _short_body(response_body),
        })

    def claim(self, result):
        """Give ``result`` the exchanges recorded since the previous claim."""
        self._by_result[id(result)] = (result, self.exchanges[self._mark:])
        self._mark = len(self.exchanges)

    def claimed(self):
        """Every (result, exchanges) pair, in the order the results were created."""
        return list(self._by_result.values())

    def exchanges_of(self, result):
        entry = self._by_result.get(id(result))
        return entry[1] if entry and entry[0] is result else []

    def hook_init(self, cls):
        """Make every new instance of ``cls`` claim the exchanges made before it."""
        original = cls.__init__
        recorder = self

        def __init__(obj, *args, **kwargs):
            original(obj, *args, **kwargs)
            recorder.claim(obj)

        cls.__init__ = __init__


def print_exchanges(exchanges, indent="      ", limit=6):
    """Print the last ``limit`` exchanges, one request line and one response line each."""
    shown = exchanges[-limit:]
    if len(exchanges) > len(shown):
        print(f"{indent}({len(exchanges) - len(shown)} earlier requests not shown)")
    for ex in shown:
        print(f"{indent}> {ex['method']} {ex['path']}" + (f"  {ex['request']}" if ex["request"] else ""))
        print(f"{indent}< {ex['status']}" + (f"  {ex['response']}" if ex["response"] else ""))
