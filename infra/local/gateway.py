"""The local API Gateway of `make run`: one base URL with the production paths, each route sent to its
function as functions/routes.json says.

`cargo lambda watch` serves every function under its own prefix (`/lambda-url/<function>/…`), which no
client or contract tool can use as the deployed API. This forwards `METHOD /v1/…` to
`<upstream>/lambda-url/<function>/v1/…` (the function sees the production path) and answers what API
Gateway answers for a request that matches no route: 404 `{"message": "Not Found"}`. Identity is still
the functions' business (in local mode, the `x-local-user-id` / `x-local-scope` headers).

Python's standard library only: `make run` already needs the venv's Python, and this adds no build.

    python infra/local/gateway.py --port 9001 --upstream http://127.0.0.1:9000
"""

import argparse
import http.client
import http.server
import json
import pathlib
import sys
import urllib.parse

ROUTES = pathlib.Path(__file__).resolve().parents[2] / "functions" / "routes.json"

# RFC 9110 7.6.1: not forwarded by a proxy (and Content-Length is set for the body actually sent).
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
}

# Written by this server for every answer (http.server's send_response), so not copied from the function's.
OWN_HEADERS = {"date", "server"}


def load_routes(path=ROUTES):
    """(method, path template segments, function) for each route of the table."""
    table = json.loads(pathlib.Path(path).read_text())
    return [(r["method"], r["path"].strip("/").split("/"), r["function"]) for r in table["routes"]]


def route(routes, method, path):
    """The function serving `method path`, or None: a `{param}` segment matches any one non-empty segment,
    as an API Gateway HTTP API route does."""
    segments = path.strip("/").split("/")
    for route_method, template, function in routes:
        if route_method != method or len(template) != len(segments):
            continue
        if all(t == s or (t.startswith("{") and t.endswith("}") and s) for t, s in zip(template, segments)):
            return function
    return None


def make_handler(routes, upstream):
    target = urllib.parse.urlsplit(upstream)

    class Gateway(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self):
            url = urllib.parse.urlsplit(self.path)
            function = route(routes, self.command, url.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if function is None:
                self._answer(404, [("Content-Type", "application/json")], b'{"message":"Not Found"}')
                return
            forwarded = f"/lambda-url/{function}{url.path}" + (f"?{url.query}" if url.query else "")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                connection.request(self.command, forwarded, body=body, headers=headers)
                reply = connection.getresponse()
                payload = reply.read()
                kept = [(k, v) for k, v in reply.getheaders() if k.lower() not in HOP_BY_HOP | OWN_HEADERS]
                self._answer(reply.status, kept, payload)
            except OSError as error:
                # What API Gateway answers when the integration cannot be reached.
                self.log_error("upstream %s: %s", upstream, error)
                self._answer(503, [("Content-Type", "application/json")], b'{"message":"Service Unavailable"}')
            finally:
                connection.close()

        def _answer(self, status, headers, body):
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _forward

        def log_message(self, format, *args):
            if self.server.verbose:
                super().log_message(format, *args)

    return Gateway


def serve(port, upstream, host="127.0.0.1", routes_path=ROUTES, verbose=False):
    """A started server (call `serve_forever`); port 0 picks a free one (`server.server_port`)."""
    server = http.server.ThreadingHTTPServer((host, port), make_handler(load_routes(routes_path), upstream))
    server.daemon_threads = True
    server.verbose = verbose
    return server


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="cargo lambda watch's base URL, e.g. http://127.0.0.1:9000")
    parser.add_argument("--verbose", action="store_true", help="log each request")
    args = parser.parse_args(argv)
    server = serve(args.port, args.upstream, args.host, verbose=args.verbose)
    print(f"API: http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
