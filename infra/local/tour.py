"""The route tour of `make run`: every route of functions/routes.json, and both sweeper tasks, answering as the
README specifies, through the local gateway's one base URL with the local auth headers.

`make contract` runs it against the service it starts before the fuzzing (so `make test` runs it); it also
runs by hand against a `make run` in another terminal:

    python infra/local/tour.py run http://127.0.0.1:9001 --functions-port 9000
    python infra/local/tour.py curl http://127.0.0.1:9001   # the curl lines make run prints

Schemathesis checks that every answer fits the contract; this checks that the answers are the right ones:
a write is read back, a filter keeps what it names, a stale write is refused, a repeated log entry is not
stored twice, a bulk write answers each entry for itself, the error report counts what was logged, and
callers without the scope are refused. Each run uses user ids and an error code of its own, so it needs no
empty database and leaves the demo users alone.

Python's standard library only, as the gateway.
"""

import argparse
import json
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request

READER = "x-local-user-id"
SCOPE = "x-local-scope"
WRITE = "tickets/write"
ADMIN = "tickets/admin"


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body) if self.body else None


class TourFailed(AssertionError):
    pass


def send(api, method, path, headers=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(api + path, data=data, method=method)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def expect(step, answer, status):
    if answer.status != status:
        raise TourFailed(f"{step}: expected {status}, got {answer.status}: {answer.body[:300]!r}")
    return answer.json() if answer.headers.get("content-type", "").startswith("application/json") else None


def check(step, condition, detail):
    if not condition:
        raise TourFailed(f"{step}: {detail}")


def uuids(passes):
    return sorted(p["pass_uuid"] for p in passes)


def examples(user, other, now):
    """One request per route, as `make run` prints them: (method, path, headers, body)."""
    write = {SCOPE: WRITE}
    return [
        ("GET", f"/v1/users/{user}/tickets?format=all", {READER: str(user)}, None),
        ("PUT", f"/v1/users/{user}/tickets", write,
         {"timestamp": now, "passes": [{"pass_uuid": "p-1", "status": "ACTIVE", "payload": {"rides": 2}}],
          "passes4": [{"pass_uuid": "p-2", "status": "USABLE", "payload": {"zone": "B"}}]}),
        ("POST", f"/v1/users/{user}/logs", write, {"kind": "passes4", "errors": ["E1"], "id": "retry-safe-1"}),
        ("GET", f"/v1/users/{user}/tickets?status=ACTIVE,USABLE&updated_since=2026-01-01T00:00:00Z&integrity=verified",
         {READER: str(user)}, None),
        ("PUT", "/v1/tickets", write,
         {"users": [{"user_id": user, "passes": [{"pass_uuid": "p-1", "status": "USED", "payload": {"rides": 3}}]},
                    {"user_id": other, "passes4": []}]}),
        ("GET", "/v1/admin/errors?kind=passes4", {SCOPE: ADMIN}, None),
    ]


def curl_lines(api, port):
    lines = []
    for method, path, headers, body in examples(1001, 1002, None):
        if body is not None:
            body = {k: v for k, v in body.items() if k != "timestamp"}
        parts = ["curl -i"] + ([f"-X {method}"] if method != "GET" else []) + [f"\"{api}{path}\""]
        parts += [f"-H '{name}: {value}'" for name, value in headers.items()]
        if body is not None:
            parts += ["-H 'content-type: application/json'", f"-d '{json.dumps(body)}'"]
        lines.append(" ".join(parts))
    for task in ('{"source": "aws.scheduler"}', '{"task": "audit"}', '{"task": "merge_duplicates"}'):
        lines.append(f"cargo lambda invoke ttl-sweeper -A 127.0.0.1 -P {port} --data-ascii '{task}'")
    return lines


def tour(api, functions_port):
    """Runs every step; returns the names of the steps that passed, raises TourFailed at the first that did not."""
    base = random.randrange(10_000_000, 90_000_000)
    user, other, stale_user = base, base + 1, base + 2
    code = f"TOUR_{base}"
    now = int(time.time() * 1000)
    done = []
    write, reader, admin = {SCOPE: WRITE}, {READER: str(user)}, {SCOPE: ADMIN}
    (_, get_path, _, _), (_, put_path, _, put_body), _, (_, filtered_path, _, _), (_, bulk_path, _, bulk_body), _ = \
        examples(user, other, now)

    step = "PUT /v1/users/{user_id}/tickets"
    expect(step, send(api, "PUT", put_path, write, put_body), 200)
    expect(step + " (a third user, for the bulk write's stale entry)",
           send(api, "PUT", f"/v1/users/{stale_user}/tickets", write, {"timestamp": now, "passes": []}), 200)
    stale = expect(step + " with an older timestamp",
                   send(api, "PUT", put_path, write, dict(put_body, timestamp=now - 1)), 409)
    check(step, stale["error"].get("stored_timestamp") == now, f"409 names stored_timestamp {now}: {stale}")
    expect(step + " without the write scope", send(api, "PUT", put_path, reader, put_body), 403)
    done.append(step)

    step = "GET /v1/users/{user_id}/tickets"
    answer = send(api, "GET", get_path, reader)
    body = expect(step, answer, 200)
    check(step, uuids(body["passes"]) == ["p-1"] and uuids(body["passes4"]) == ["p-2"], f"reads back the write: {body}")
    check(step, all(p["integrity"] == "verified" for p in body["passes"] + body["passes4"]), "verified")
    check(step, body["timestamp"] == now and body["stale"] is False, f"timestamp {now}, fresh: {body}")
    check(step, answer.headers.get("x-cache") == "HIT" and answer.headers.get("etag"), f"headers {answer.headers}")
    expect(step + " with If-None-Match", send(api, "GET", get_path, dict(reader, **{"if-none-match": answer.headers["etag"]})), 304)
    expect(step + " of another user", send(api, "GET", f"/v1/users/{other}/tickets", reader), 403)
    expect(step + " without identity", send(api, "GET", get_path), 401)
    direct = send(f"http://127.0.0.1:{functions_port}/lambda-url/get-tickets", "GET", get_path, reader)
    same = expect(step + " at the function's own URL", direct, 200)
    check(step, (same["passes"], same["passes4"]) == (body["passes"], body["passes4"]), "the same passes without the gateway")
    done.append(step)

    step = "GET /v1/users/{user_id}/tickets with filters"
    body = expect(step, send(api, "GET", filtered_path, reader), 200)
    check(step, uuids(body["passes"]) == ["p-1"] and uuids(body["passes4"]) == ["p-2"], f"both match: {body}")
    body = expect(step, send(api, "GET", get_path + "&status=USABLE", reader), 200)
    check(step, body["passes"] == [] and uuids(body["passes4"]) == ["p-2"], f"status=USABLE keeps p-2 only: {body}")
    body = expect(step, send(api, "GET", get_path + f"&updated_since={now + 60_000}", reader), 200)
    check(step, body["passes"] == [] and body["passes4"] == [], f"nothing updated in the future: {body}")
    for bad in ("status=", "updated_since=yesterday", "integrity=trusted", "status=" + ",".join(["A"] * 11)):
        error = expect(step + f" ({bad})", send(api, "GET", get_path + "&" + bad, reader), 400)
        check(step, error["error"]["code"] == "invalid_filter", f"{bad}: invalid_filter, got {error}")
    done.append(step)

    step = "POST /v1/users/{user_id}/logs"
    entry = {"kind": "passes4", "errors": [{"code": code, "message": "tour"}, code], "id": f"tour-{base}"}
    expect(step, send(api, "POST", f"/v1/users/{user}/logs", write, entry), 201)
    expect(step + " again (same id)", send(api, "POST", f"/v1/users/{user}/logs", write, entry), 200)
    expect(step + " without the write scope", send(api, "POST", f"/v1/users/{user}/logs", reader, entry), 403)
    done.append(step)

    step = "PUT /v1/tickets (bulk)"
    users = bulk_body["users"] + [{"user_id": stale_user, "timestamp": now - 1, "passes": []}]
    body = expect(step, send(api, "PUT", bulk_path, write, {"users": users}), 200)
    statuses = [(r["user_id"], r["status"]) for r in body["results"]]
    check(step, statuses == [(user, 200), (other, 200), (stale_user, 409)], f"an answer per entry, in order: {body}")
    check(step, body["counts"] == {"200": 2, "409": 1}, f"counts: {body['counts']}")
    read = expect(step, send(api, "GET", get_path, reader), 200)
    check(step, [p["status"] for p in read["passes"]] == ["USED"] and uuids(read["passes4"]) == ["p-2"],
          f"the entry merged by pass_uuid and kept passes4: {read}")
    duplicate = {"users": [{"user_id": user, "passes": []}, {"user_id": user, "passes": []}]}
    expect(step + " with a repeated user", send(api, "PUT", bulk_path, write, duplicate), 400)
    expect(step + " without the write scope", send(api, "PUT", bulk_path, reader, {"users": users}), 403)
    done.append(step)

    step = "GET /v1/admin/errors"
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1000 - 60))
    report = expect(step, send(api, "GET", f"/v1/admin/errors?kind=passes4&user_id={user}&since={since}", admin), 200)
    codes = {c["code"]: c["count"] for c in report["by_code"]}
    check(step, report["total"] == 2 and codes.get(code) == 2, f"the logged entry's two errors, once: {report}")
    check(step, report["top_users"] == [{"user_id": user, "count": 2}], f"top_users: {report['top_users']}")
    expect(step + " as a reader", send(api, "GET", "/v1/admin/errors", reader), 403)
    error = expect(step + " reversed window", send(api, "GET", "/v1/admin/errors?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", admin), 400)
    check(step, error["error"]["code"] == "invalid_filter", f"a reversed window: {error}")
    done.append(step)

    for name, event, key in (("sweep", {"source": "aws.scheduler"}, "deleted_documents"),
                             ("audit", {"task": "audit"}, "audited_documents"),
                             ("merge_duplicates", {"task": "merge_duplicates"}, "examined_documents")):
        step = f"ttl-sweeper {name}"
        out = subprocess.run(["cargo", "lambda", "invoke", "ttl-sweeper", "-A", "127.0.0.1", "-P", str(functions_port),
                              "--data-ascii", json.dumps(event)], capture_output=True, text=True, timeout=300)
        check(step, out.returncode == 0, f"invoke failed: {out.stderr[-500:]}")
        summary = json.loads(out.stdout)
        check(step, isinstance(summary.get(key), int), f"{key} in {summary}")
        if name == "audit":
            check(step, summary["task"] == "audit" and summary["audited_documents"] >= 3, f"audited our documents: {summary}")
        done.append(step)
    return done


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the tour against a running make run")
    run.add_argument("api")
    run.add_argument("--functions-port", type=int, default=9000)
    curl = sub.add_parser("curl", help="print make run's curl lines")
    curl.add_argument("api")
    curl.add_argument("--functions-port", type=int, default=9000)
    args = parser.parse_args()
    if args.command == "curl":
        print("\n".join("  " + line for line in curl_lines(args.api, args.functions_port)))
        return 0
    try:
        for name in tour(args.api.rstrip("/"), args.functions_port):
            print(f"tour: {name}: as specified")
    except TourFailed as failure:
        print(f"tour FAILED: {failure}", file=sys.stderr)
        return 1
    print("tour: every route and both sweeper tasks answered as specified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
