"""The local gateway of `make run` (infra/local/gateway.py): routes as functions/routes.json says and
invokes the route's function with the event API Gateway sends, answering what the function answers."""

import base64
import http.client
import http.server
import json
import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "local"))
import gateway  # noqa: E402

ROUTES = gateway.load_routes()


def _function(method, path):
    found = gateway.route(ROUTES, method, path)
    return found and (found[0].function, found[1])


def test_each_route_goes_to_its_function():
    table = json.loads(gateway.ROUTES.read_text())["routes"]
    for r in table:
        path = r["path"].replace("{user_id}", "42")
        parameters = {"user_id": "42"} if "{user_id}" in r["path"] else {}
        assert _function(r["method"], path) == (r["function"], parameters), r
        assert _function(r["method"], path + "/") == (r["function"], parameters), "a trailing slash is tolerated"
    assert _function("GET", "/v1/users/42/tickets") == ("get-tickets", {"user_id": "42"})
    assert _function("PUT", "/v1/users/abc/tickets") == ("update-tickets", {"user_id": "abc"}), "the function checks the id"
    assert _function("PUT", "/v1/tickets") == ("update-tickets", {})
    assert _function("GET", "/v1/admin/errors") == ("get-tickets", {})


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


class _Runtime(http.server.BaseHTTPRequestHandler):
    """cargo lambda watch's Invoke API: records each event and answers with `reply`."""

    protocol_version = "HTTP/1.1"
    seen = []
    reply = (200, {})

    def do_POST(self):
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Runtime.seen.append((self.path, event))
        status, invocation = _Runtime.reply
        text = json.dumps(invocation).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args):
        pass


@pytest.fixture
def stack():
    runtime = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Runtime)
    front = gateway.serve(0, f"http://127.0.0.1:{runtime.server_port}")
    for server in (runtime, front):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    _Runtime.seen.clear()
    yield front.server_port, runtime
    front.shutdown()
    runtime.shutdown()


def _request(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    reply = connection.getresponse()
    return reply.status, reply.getheaders(), reply.read()


def test_a_request_reaches_its_function_as_api_gateway_sends_it(stack):
    port, _ = stack
    _Runtime.reply = (200, {
        "statusCode": 201,
        "headers": {"content-type": "application/json", "etag": '"abc"'},
        "multiValueHeaders": {"vary": ["a", "b"]},
        "body": '{"ok":true}',
        "isBase64Encoded": False,
    })
    body = b'{"kind": "passes", "errors": ["E1"]}'
    status, headers, reply = _request(
        port, "POST", "/v1/users/7/logs?x=1&x=2&y=%2C&z=", body, {"X-Local-Scope": "tickets/write", "Content-Type": "application/json"}
    )
    assert (status, reply) == (201, b'{"ok":true}')
    assert ("etag", '"abc"') in headers and ("vary", "a") in headers and ("vary", "b") in headers
    path, event = _Runtime.seen[-1]
    assert path == "/2015-03-31/functions/push-log/invocations"
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "POST /v1/users/{user_id}/logs"
    assert (event["rawPath"], event["rawQueryString"]) == ("/v1/users/7/logs", "x=1&x=2&y=%2C&z=")
    assert event["pathParameters"] == {"user_id": "7"}
    assert event["queryStringParameters"] == {"x": "1,2", "y": ",", "z": ""}
    assert event["headers"]["x-local-scope"] == "tickets/write"
    assert (event["body"], event["isBase64Encoded"]) == (body.decode(), False)
    assert event["requestContext"]["http"]["method"] == "POST"


def test_a_body_that_is_not_utf8_travels_as_base64(stack):
    port, _ = stack
    _Runtime.reply = (200, {"statusCode": 200, "body": base64.b64encode(b"\xff").decode(), "isBase64Encoded": True})
    status, _, reply = _request(port, "PUT", "/v1/tickets", b"\xff\xfe{", {"Content-Type": "application/json"})
    assert (status, reply) == (200, b"\xff")
    _, event = _Runtime.seen[-1]
    assert (event["isBase64Encoded"], base64.b64decode(event["body"])) == (True, b"\xff\xfe{")
    assert "pathParameters" not in event and "queryStringParameters" not in event


def test_unrouted_requests_get_api_gateways_answer_and_reach_no_function(stack):
    port, _ = stack
    for method in ["DELETE", "TRACE", "GET"]:
        status, _, reply = _request(port, method, "/v1/users/7/logs")
        assert (status, json.loads(reply)) == (404, {"message": "Not Found"}), method
    assert _Runtime.seen == []


def test_a_failed_invocation_is_a_500_and_an_unreachable_runtime_a_503(stack):
    port, runtime = stack
    _Runtime.reply = (500, {"errorType": "Panic"})
    status, _, reply = _request(port, "GET", "/v1/users/7/tickets")
    assert (status, json.loads(reply)) == (500, {"message": "Internal Server Error"})
    runtime.shutdown()
    runtime.server_close()
    status, _, reply = _request(port, "GET", "/v1/users/7/tickets")
    assert (status, json.loads(reply)) == (503, {"message": "Service Unavailable"})


def test_the_route_tour_has_an_example_for_every_route():
    """make run prints the tour's examples and make contract runs the tour: a new route must join it."""
    import tour

    served = {(m, gateway.route(ROUTES, m, p.split("?")[0])[0].path) for m, p, _, _ in tour.examples(1, 2, 0)}
    assert served == {(r.method, r.path) for r in ROUTES}


class _Functions(http.server.BaseHTTPRequestHandler):
    """cargo lambda watch's Invoke API for a burst: answers each invocation with its user id, once `open` is
    set, and counts the invocations in flight."""

    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    in_flight = most = 0
    open = threading.Event()

    def do_POST(self):
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with _Functions.lock:
            _Functions.in_flight += 1
            _Functions.most = max(_Functions.most, _Functions.in_flight)
        _Functions.open.wait(10)
        time.sleep(0.005)  # an invocation takes a while: the next requests pile up
        with _Functions.lock:
            _Functions.in_flight -= 1
        text = json.dumps({"statusCode": 200, "body": event["pathParameters"]["user_id"]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args):
        pass


class _FunctionsServer(http.server.ThreadingHTTPServer):
    # As cargo lambda watch (tokio) does, a backlog far above socketserver's 5: only the gateway's queueing is tested.
    request_queue_size = 1024
    daemon_threads = True


@pytest.fixture
def functions():
    server = _FunctionsServer(("127.0.0.1", 0), _Functions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Functions.in_flight = _Functions.most = 0
    _Functions.open.set()
    yield f"http://127.0.0.1:{server.server_port}"
    _Functions.open.set()
    server.shutdown()
    server.server_close()


def _burst(port, count):
    """`count` requests whose connections open at once: user id -> (status, body) or the error it met."""
    start = threading.Barrier(count)
    results = {}

    def one(user):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        start.wait()
        try:
            connection.request("GET", f"/v1/users/{user}/tickets")
            reply = connection.getresponse()
            results[user] = (reply.status, reply.read().decode())
        except OSError as error:  # a reset, a refusal, or a connection left in the backlog past the timeout
            results[user] = repr(error)
        finally:
            connection.close()

    clients = [threading.Thread(target=one, args=(user,)) for user in range(count)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    return results


def test_a_burst_of_200_connections_is_queued_and_every_request_answered(functions):
    front = gateway.serve(0, functions)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    try:
        results = _burst(front.server_port, 200)
    finally:
        front.shutdown()
        front.server_close()
    failed = {user: results.get(user) for user in range(200) if results.get(user) != (200, str(user))}
    assert not failed, f"{len(failed)} of 200 unanswered, e.g. {sorted(failed.items())[:3]}"
    assert _Functions.most <= gateway.CONCURRENCY


def test_invocations_beyond_the_concurrency_wait_for_a_slot(functions):
    _Functions.open.clear()
    front = gateway.serve(0, functions, concurrency=4)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    results = {}
    try:
        burst = threading.Thread(target=lambda: results.update(_burst(front.server_port, 20)))
        burst.start()
        deadline = time.monotonic() + 5
        while _Functions.in_flight < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # room for any invocation beyond the limit to arrive
        assert (_Functions.in_flight, _Functions.most) == (4, 4)
        _Functions.open.set()
        burst.join()
    finally:
        front.shutdown()
        front.server_close()
    assert results == {user: (200, str(user)) for user in range(20)}
    assert _Functions.most == 4
