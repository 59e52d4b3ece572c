"""The local API Gateway of `make run`: one base URL with the production paths, each route sent to its
function as functions/routes.json says, in the event API Gateway sends.

`cargo lambda watch` serves every function under its own prefix (`/lambda-url/<function>/…`), which no
client or contract tool can use as the deployed API, and its function-URL emulation refuses bodies that
are not UTF-8. This gateway matches `METHOD /v1/…` against the route table and invokes the route's
function through cargo lambda's Invoke API (`/2015-03-31/functions/<function>/invocations`) with an HTTP
API payload 2.0 event, as API Gateway does: `routeKey`, `pathParameters`, query parameters (repeated
names joined by commas), lower-case headers, and the body as text or, when it is not UTF-8, base64.
The function's answer (status, headers, body) goes back to the client. A request that matches no route
gets API Gateway's 404 `{"message": "Not Found"}`; a function that cannot be reached, 503; a failed
invocation, 500. Identity stays the functions' business (in local mode, `x-local-user-id` /
`x-local-scope`); no authorizer runs here.

A burst of connections (a load test) is queued, not refused: the listen backlog holds up to 1024 pending
connections (or the system's `somaxconn`, if lower), each accepted connection gets its own thread, and at
most `--concurrency` invocations (32 by default) are in flight toward the functions at once; the requests
beyond that wait in the gateway for a free slot, their connections held open.

Python's standard library only: `make run` already needs the venv's Python, and this adds no build.

    python infra/local/gateway.py --port 9001 --upstream http://127.0.0.1:9000
"""

import argparse
import base64
import http.client
import http.server
import json
import pathlib
import sys
import threading
import time
import urllib.parse
import uuid

ROUTES = pathlib.Path(__file__).resolve().parents[2] / "functions" / "routes.json"
CONCURRENCY = 32


class Route:
    def __init__(self, method, path, function):
        self.method, self.path, self.function = method, path, function
        self.template = path.strip("/").split("/")

    def match(self, method, path):
        """The path parameters when `method path` is this route: a `{param}` segment matches any one
        non-empty segment, as an HTTP API route does."""
        segments = path.strip("/").split("/")
        if method != self.method or len(segments) != len(self.template):
            return None
        parameters = {}
        for wanted, given in zip(self.template, segments):
            if wanted.startswith("{") and wanted.endswith("}") and given:
                parameters[wanted[1:-1]] = urllib.parse.unquote(given)
            elif wanted != given:
                return None
        return parameters


def load_routes(path=ROUTES):
    table = json.loads(pathlib.Path(path).read_text())
    return [Route(r["method"], r["path"], r["function"]) for r in table["routes"]]


def route(routes, method, path):
    """The route serving `method path` and its path parameters, or None."""
    for candidate in routes:
        parameters = candidate.match(method, path)
        if parameters is not None:
            return candidate, parameters
    return None


def event(matched, parameters, method, target, headers, body, source_ip="127.0.0.1"):
    """The HTTP API (payload 2.0) event for a request."""
    url = urllib.parse.urlsplit(target)
    joined = {}
    for name, value in headers:
        name = name.lower()
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    query = {}
    for name, value in urllib.parse.parse_qsl(url.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    now = time.time()
    route_key = f"{matched.method} {matched.path}"
    result = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": url.path,
        "rawQueryString": url.query,
        "headers": joined,
        "requestContext": {
            "accountId": "local",
            "apiId": "local",
            "domainName": joined.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": url.path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if "cookie" in joined:
        result["cookies"] = [c.strip() for c in joined["cookie"].split(";")]
    if query:
        result["queryStringParameters"] = query
    if parameters:
        result["pathParameters"] = parameters
    if body:
        result["body"] = text
    return result


def answer(invocation):
    """(status, headers, body) from a function's payload 2.0 response."""
    status = int(invocation.get("statusCode", 200))
    headers = [(k, v) for k, v in (invocation.get("headers") or {}).items()]
    for name, values in (invocation.get("multiValueHeaders") or {}).items():
        if name.lower() not in {k.lower() for k, _ in headers}:
            headers.extend((name, v) for v in values)
    headers.extend(("Set-Cookie", c) for c in invocation.get("cookies") or [])
    body = invocation.get("body") or ""
    body = base64.b64decode(body) if invocation.get("isBase64Encoded") else body.encode("utf-8")
    return status, headers, body


def make_handler(routes, upstream, concurrency=CONCURRENCY):
    target = urllib.parse.urlsplit(upstream)
    slots = threading.BoundedSemaphore(concurrency)

    class Gateway(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            found = route(routes, self.command, urllib.parse.urlsplit(self.path).path)
            if found is None:
                self._answer(404, [("Content-Type", "application/json")], b'{"message":"Not Found"}')
                return
            matched, parameters = found
            request = event(matched, parameters, self.command, self.path, self.headers.items(), body, self.client_address[0])
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            # Held for the invocation only: a slow client does not keep a function busy.
            with slots:
                try:
                    connection.request(
                        "POST",
                        f"/2015-03-31/functions/{matched.function}/invocations",
                        body=json.dumps(request).encode("utf-8"),
                        headers={"Content-Type": "application/json"},
                    )
                    reply = connection.getresponse()
                    payload = reply.read()
                except OSError as error:
                    self.log_error("upstream %s: %s", upstream, error)
                    self._answer(503, [("Content-Type", "application/json")], b'{"message":"Service Unavailable"}')
                    return
                finally:
                    connection.close()
            try:
                if reply.status != 200:
                    raise ValueError(f"invocation answered {reply.status}: {payload[:200]!r}")
                self._answer(*answer(json.loads(payload)))
            except (ValueError, TypeError, AttributeError) as error:
                # API Gateway's answer to a function error or a malformed function response.
                self.log_error("%s: %s", matched.function, error)
                self._answer(500, [("Content-Type", "application/json")], b'{"message":"Internal Server Error"}')

        def _answer(self, status, headers, body):
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in {"content-length", "date", "server", "connection", "transfer-encoding"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def __getattr__(self, name):
            # Every method (TRACE included) is matched against the route table, as API Gateway does.
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def log_message(self, format, *args):
            if self.server.verbose:
                super().log_message(format, *args)

    return Gateway


class Server(http.server.ThreadingHTTPServer):
    # socketserver's default backlog of 5 overflows under a burst: the kernel then drops handshakes, so
    # clients stall for seconds on retransmits or are reset. The kernel caps this at somaxconn.
    request_queue_size = 1024
    daemon_threads = True


def serve(port, upstream, host="127.0.0.1", routes_path=ROUTES, verbose=False, concurrency=CONCURRENCY):
    """A started server (call `serve_forever`); port 0 picks a free one (`server.server_port`)."""
    server = Server((host, port), make_handler(load_routes(routes_path), upstream, concurrency))
    server.verbose = verbose
    return server


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="cargo lambda watch's base URL, e.g. http://127.0.0.1:9000")
    parser.add_argument("--verbose", action="store_true", help="log each request")
    parser.add_argument(
        "--concurrency", type=int, default=CONCURRENCY,
        help=f"most invocations in flight at once (default {CONCURRENCY}); further requests wait for a slot",
    )
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    server = serve(args.port, args.upstream, args.host, verbose=args.verbose, concurrency=args.concurrency)
    print(f"API: http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
