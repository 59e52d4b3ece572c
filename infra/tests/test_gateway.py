"""The local gateway of `make run` (infra/local/gateway.py): routes as functions/routes.json says and
forwards requests and answers unchanged."""

import http.client
import http.server
import json
import os
import sys
import threading

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "local"))
import gateway  # noqa: E402

ROUTES = gateway.load_routes()


def test_each_route_goes_to_its_function():
    table = json.loads(gateway.ROUTES.read_text())["routes"]
    for r in table:
        path = r["path"].replace("{user_id}", "42")
        assert gateway.route(ROUTES, r["method"], path) == r["function"], r
        assert gateway.route(ROUTES, r["method"], path + "/") == r["function"], "a trailing slash is tolerated"
    assert gateway.route(ROUTES, "GET", "/v1/users/42/tickets") == "get-tickets"
    assert gateway.route(ROUTES, "PUT", "/v1/users/42/tickets") == "update-tickets"
    assert gateway.route(ROUTES, "PUT", "/v1/tickets") == "update-tickets"
    assert gateway.route(ROUTES, "GET", "/v1/admin/errors") == "get-tickets"


@pytest.mark.parametrize(
    "method,path",
    [
        ("DELETE", "/v1/users/42/tickets"),  # a path with routes, another method
        ("GET", "/v1/users/42/other"),
        ("GET", "/v1/users//tickets"),  # an empty parameter matches nothing
        ("GET", "/v1/users/42/tickets/more"),
        ("POST", "/v1/tickets"),
        ("GET", "/"),
    ],
)
def test_requests_without_a_route_match_nothing(method, path):
    assert gateway.route(ROUTES, method, path) is None


class _Upstream(http.server.BaseHTTPRequestHandler):
    """Answers like cargo lambda watch would, and records what it was sent."""

    protocol_version = "HTTP/1.1"
    seen = []

    def _any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        _Upstream.seen.append((self.command, self.path, dict(self.headers.items()), body))
        reply = b'{"ok":true}'
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("ETag", '"abc"')
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_PUT = do_POST = _any

    def log_message(self, *args):
        pass


@pytest.fixture
def stack():
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    front = gateway.serve(0, f"http://127.0.0.1:{upstream.server_port}")
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (upstream, front)]
    for t in threads:
        t.start()
    _Upstream.seen.clear()
    yield front.server_port, upstream
    front.shutdown()
    upstream.shutdown()


def _request(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    reply = connection.getresponse()
    return reply.status, dict(reply.getheaders()), reply.read()


def test_a_request_reaches_its_function_under_the_production_path(stack):
    port, _ = stack
    body = b'{"kind": "passes", "errors": ["E1"]}'
    status, headers, reply = _request(
        port, "POST", "/v1/users/7/logs?x=1&y=%2C", body, {"x-local-scope": "tickets/write", "content-type": "application/json"}
    )
    assert (status, reply, headers["ETag"]) == (201, b'{"ok":true}', '"abc"')
    method, path, sent, sent_body = _Upstream.seen[-1]
    assert (method, path, sent_body) == ("POST", "/lambda-url/push-log/v1/users/7/logs?x=1&y=%2C", body)
    assert sent["x-local-scope"] == "tickets/write"


def test_unrouted_requests_get_api_gateways_answer_and_reach_no_function(stack):
    port, _ = stack
    status, _, reply = _request(port, "DELETE", "/v1/users/7/tickets")
    assert (status, json.loads(reply)) == (404, {"message": "Not Found"})
    assert _Upstream.seen == []


def test_an_unreachable_function_is_a_503(stack):
    port, upstream = stack
    upstream.shutdown()
    upstream.server_close()
    status, _, reply = _request(port, "GET", "/v1/users/7/tickets")
    assert (status, json.loads(reply)) == (503, {"message": "Service Unavailable"})
