"""Tests of the local tracking server (bucket_logging._server.server) and its command line."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from support import free_port

from bucket_logging._cli.main import format_call, format_rejection, main
from bucket_logging._items.item import MAX_BODY_BYTES, Item, bulk_body
from bucket_logging._server import server as _server
from bucket_logging._server.server import RequestRecord, TrackingServer

KEY = "trSecretKey123"
JSON = {"Content-Type": "application/json"}

VALID: dict[str, dict[str, Any]] = {
    "user": {"userId": 42, "attributes": {"name": "Rasmus"}, "context": {"active": True}},
    "company": {"companyId": "acme", "userId": 42, "attributes": {"name": "Acme Corp"}},
    "event": {
        "event": "Sent message",
        "userId": "u1",
        "companyId": 7,
        "attributes": {"position": "popover", "version": 3},
        "timestamp": "2021-01-01T13:37:00.000Z",
    },
    "feedback": {"featureId": "f1", "userId": 42, "score": 4, "comment": "nice"},
}


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def post(client: httpx.Client, srv: TrackingServer, method: str, body: Any) -> httpx.Response:
    return client.post(f"{srv.url}/{KEY}/{method}", json=body)


def error(response: httpx.Response) -> dict[str, Any]:
    data = response.json()
    assert data["success"] is False
    err: dict[str, Any] = data["error"]
    return err


def messages(response: httpx.Response) -> list[str]:
    return [e["message"] for e in error(response)["validationErrors"]]


def sized_bulk(size: int) -> bytes:
    """A valid bulk body of exactly ``size`` bytes."""

    def build(pad: str) -> bytes:
        return orjson.dumps(
            [{"type": "event", "event": "e", "userId": 1, "attributes": {"p": pad}}]
        )

    body = build("x" * (size - len(build(""))))
    assert len(body) == size
    return body


# --------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize("kind", sorted(VALID))
def test_each_endpoint_accepts_a_valid_item(
    server: TrackingServer, client: httpx.Client, kind: str
) -> None:
    r = post(client, server, kind, VALID[kind])
    assert r.status_code == 200
    assert r.json() == {"success": True}
    assert r.headers["content-length"] == str(len(r.content))
    assert server.calls == [{"type": kind, **VALID[kind]}]
    assert server.requests == [RequestRecord("POST", kind, 200, 1, len(orjson.dumps(VALID[kind])))]


def test_single_endpoint_accepts_a_matching_type(
    server: TrackingServer, client: httpx.Client
) -> None:
    assert post(client, server, "event", {"type": "event", **VALID["event"]}).status_code == 200
    r = post(client, server, "event", {"type": "user", **VALID["event"]})
    assert r.status_code == 400
    assert server.call_count == 1


def test_bulk_accepts_every_kind_in_order(server: TrackingServer, client: httpx.Client) -> None:
    entries = [{"type": kind, **item} for kind, item in VALID.items()]
    r = post(client, server, "bulk", entries)
    assert r.status_code == 200
    assert server.calls == entries
    assert server.calls_of("feedback") == [entries[3]]
    assert server.requests[-1].items == 4
    assert post(client, server, "bulk", []).status_code == 200
    assert server.calls == entries  # an empty bulk adds nothing
    assert server.requests[-1].items == 0


def test_bulk_of_encoded_items(server: TrackingServer, client: httpx.Client) -> None:
    items = [Item.event("Sent message", i, {"n": i}) for i in range(1000)]
    r = client.post(
        f"{server.url}/{KEY}/bulk", content=bulk_body(i.body for i in items), headers=JSON
    )
    assert r.status_code == 200
    assert server.call_count == 1000
    assert server.calls[999]["userId"] == 999


def test_keep_alive_reuses_one_connection(server: TrackingServer, client: httpx.Client) -> None:
    seen: set[Any] = set()
    for _ in range(5):
        r = post(client, server, "event", VALID["event"])
        assert r.status_code == 200
        assert r.headers.get("connection") != "close"
        stream = r.extensions["network_stream"]
        seen.add(stream.get_extra_info("client_addr"))
    assert len(seen) == 1


# --------------------------------------------------------------------------- validation

INVALID = [
    pytest.param("event", {"event": 5, "userId": 1}, "event must be", id="int-event-name"),
    pytest.param("event", {"userId": 1}, "event is required", id="no-event-name"),
    pytest.param("user", {"userId": ""}, "userId must not be empty", id="empty-id"),
    pytest.param("user", {"userId": True}, "not a bool", id="bool-id"),
    pytest.param("company", {"companyId": None}, "companyId is required", id="null-id"),
    pytest.param(
        "feedback", {"featureId": "f", "userId": 1, "score": 9}, "score must be", id="score-9"
    ),
    pytest.param(
        "feedback", {"userId": 1, "score": 3}, "featureId or key", id="feedback-no-feature"
    ),
    pytest.param(
        "feedback", {"featureId": "f", "userId": 1}, "a score (1-5), a non-empty", id="no-score"
    ),
    pytest.param(
        "feedback",
        {"featureId": "f", "userId": 1, "comment": ""},
        "a score (1-5), a non-empty comment",
        id="empty-comment",
    ),
    pytest.param("user", {"userId": 1, "name": "x"}, "unknown field", id="unknown-field"),
    pytest.param(
        "event",
        {"event": "e", "userId": 1, "context": {"active": True, "ip": "1.2.3.4"}},
        "context supports only 'active'",
        id="context-other-key",
    ),
    pytest.param(
        "user", {"userId": 1, "timestamp": "yesterday"}, "timestamp must be", id="bad-timestamp"
    ),
    pytest.param("user", [1, 2], "must be a JSON object", id="single-not-object"),
    pytest.param("bulk", VALID["user"], "must be a JSON array", id="bulk-not-a-list"),
    pytest.param("bulk", [{"userId": 1}], "items[0]: type must be one of", id="bulk-no-type"),
    pytest.param(
        "bulk",
        [{"type": "user", "userId": 1}, {"type": "feedback", "userId": 1, "score": 0}],
        "items[1]: score must be",
        id="bulk-entry",
    ),
]


@pytest.mark.parametrize(("kind", "body", "expected"), INVALID)
def test_invalid_items_are_rejected(
    server: TrackingServer, client: httpx.Client, kind: str, body: Any, expected: str
) -> None:
    r = post(client, server, kind, body)
    assert r.status_code == 400
    err = error(r)
    assert err["code"] == "BODY_VALIDATION_FAILED"
    assert any(expected in m for m in messages(r)), messages(r)
    assert expected in err["message"] or len(messages(r)) > 1
    assert server.calls == []  # a 400 on a bulk request rejects the whole request
    record = server.requests[-1]
    assert (record.status, record.code) == (400, "BODY_VALIDATION_FAILED")
    assert record.errors == tuple(messages(r))


def test_invalid_json(server: TrackingServer, client: httpx.Client) -> None:
    r = client.post(f"{server.url}/{KEY}/bulk", content=b'[{"type": "user",', headers=JSON)
    assert r.status_code == 400
    assert "not valid JSON" in messages(r)[0]
    r = client.post(f"{server.url}/{KEY}/event", headers=JSON)  # no body at all
    assert r.status_code == 400


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type(
    server: TrackingServer, client: httpx.Client, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post(f"{server.url}/{KEY}/user", content=b'{"userId": 1}', headers=headers)
    assert r.status_code == 400
    assert "Content-Type must be application/json" in messages(r)[0]


def test_content_type_with_charset(server: TrackingServer, client: httpx.Client) -> None:
    r = client.post(
        f"{server.url}/{KEY}/user",
        content=b'{"userId": 1}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 200


def test_many_errors_are_capped(server: TrackingServer, client: httpx.Client) -> None:
    r = post(client, server, "bulk", [{"type": "user", "userId": ""}] * 500)
    assert r.status_code == 400
    listed = messages(r)
    assert len(listed) == 101
    assert listed[-1] == "... and 400 more problem(s)"


# --------------------------------------------------------------------------- size, keys, paths


def test_body_limit(server: TrackingServer, client: httpx.Client) -> None:
    url = f"{server.url}/{KEY}/bulk"
    r = client.post(url, content=sized_bulk(MAX_BODY_BYTES), headers=JSON)
    assert r.status_code == 200
    assert server.call_count == 1
    r = client.post(url, content=sized_bulk(MAX_BODY_BYTES + 1), headers=JSON)
    assert r.status_code == 413
    assert error(r)["code"] == "PAYLOAD_TOO_LARGE"
    assert server.call_count == 1
    # the connection stays usable after a 413
    assert client.post(url, content=sized_bulk(1000), headers=JSON).status_code == 200
    assert [rec.status for rec in server.requests] == [200, 413, 200]


def test_tracking_keys(client: httpx.Client) -> None:
    with TrackingServer(tracking_keys=[KEY]) as srv:
        assert post(client, srv, "user", {"userId": 1}).status_code == 200
        r = client.post(f"{srv.url}/other-key/user", json={"userId": 1})
        assert r.status_code == 400
        assert error(r)["code"] == "INVALID_API_KEY"
        assert srv.call_count == 1
        assert srv.requests[-1].code == "INVALID_API_KEY"


@pytest.mark.parametrize(
    "path", [f"/{KEY}/track", f"/{KEY}", "/", f"/{KEY}/event/extra", "//event", f"/x/{KEY}/bulk"]
)
def test_unknown_paths_are_404(server: TrackingServer, client: httpx.Client, path: str) -> None:
    r = client.post(f"{server.url}{path}", json={"userId": 1})
    assert r.status_code == 404
    assert error(r)["code"] == "NOT_FOUND"
    assert server.requests[-1].kind is None


@pytest.mark.parametrize("keys", [None, [KEY, "sec_prefix"]])
@pytest.mark.parametrize(
    ("segment", "headers"),
    [("v1", {}), ("API", {}), ("v1", {"Authorization": "Bearer sec_prefix"}),
     ("prefix", {"Authorization": "Bearer sec_prefix"})],
)  # fmt: skip
def test_a_path_of_the_clients_base_url_is_not_taken_for_a_key(
    client: httpx.Client, keys: list[str] | None, segment: str, headers: dict[str, str]
) -> None:
    with TrackingServer(tracking_keys=keys) as srv:
        r = client.post(f"{srv.url}/{segment}/bulk", json=[], headers=headers)
        assert r.status_code == 404, r.text
        assert error(r)["code"] == "NOT_FOUND"
        assert "does the client's base URL have a path?" in error(r)["message"]
        assert srv.requests[-1].status == 404
        # a key in the path, and the Runtime API's own path, are taken as before
        assert client.post(f"{srv.url}/{KEY}/bulk", json=[]).status_code == 200
        bearer = {"Authorization": "Bearer sec_prefix"}
        assert client.post(f"{srv.url}/bulk", json=[], headers=bearer).status_code == 200


def test_other_http_methods(server: TrackingServer, client: httpx.Client) -> None:
    r = client.get(f"{server.url}/{KEY}/bulk")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert client.get(f"{server.url}/favicon.ico").status_code == 404
    # query strings and a trailing slash are tolerated: the call is taken
    assert client.post(f"{server.url}/{KEY}/user/?x=1", json={"userId": 1}).status_code == 200
    assert server.calls == [{"type": "user", "userId": 1}]
    assert server.requests[-1].kind == "user"


# --------------------------------------------------------------------------- fault switches


def test_fail_next(server: TrackingServer, client: httpx.Client) -> None:
    server.fail_next(2)
    assert post(client, server, "user", {"userId": 1}).status_code == 500
    r = post(client, server, "user", {"userId": 1})
    assert r.status_code == 500
    assert error(r)["code"] == "INTERNAL_ERROR"
    assert post(client, server, "user", {"userId": 1}).status_code == 200
    server.fail_next(1, status=503)
    assert post(client, server, "user", {"userId": 1}).status_code == 503
    assert [r.status for r in server.requests] == [500, 500, 200, 503]
    assert server.call_count == 1


@pytest.mark.parametrize(("retry_after", "header"), [(1, "1"), (2.0, "2"), (0.25, "0.25")])
def test_throttle_next(
    server: TrackingServer, client: httpx.Client, retry_after: float, header: str
) -> None:
    server.throttle_next(1, retry_after=retry_after)
    r = post(client, server, "user", {"userId": 1})
    assert r.status_code == 429
    assert r.headers["retry-after"] == header
    assert post(client, server, "user", {"userId": 1}).status_code == 200
    assert [rec.status for rec in server.requests] == [429, 200]
    assert server.calls == [{"type": "user", "userId": 1}]  # the throttled one was not taken


def test_reset_next(server: TrackingServer, client: httpx.Client) -> None:
    server.reset_next(1)
    with pytest.raises(httpx.TransportError):
        post(client, server, "bulk", [{"type": "user", "userId": 1}])
    assert server.call_count == 0
    assert server.requests[-1].status == 0
    assert server.requests[-1].kind == "bulk"
    assert post(client, server, "bulk", [{"type": "user", "userId": 1}]).status_code == 200
    assert server.call_count == 1


def test_delay_makes_the_client_time_out(server: TrackingServer) -> None:
    server.delay(30)
    with httpx.Client(timeout=0.2) as c, pytest.raises(httpx.ReadTimeout):
        c.post(f"{server.url}/{KEY}/user", json={"userId": 1})
    server.delay(0)
    with httpx.Client(timeout=5) as c:
        assert c.post(f"{server.url}/{KEY}/user", json={"userId": 2}).status_code == 200
    assert {"type": "user", "userId": 2} in server.calls  # taken at once again


def test_stop_interrupts_a_delay() -> None:
    srv = TrackingServer().start()
    srv.delay(60)
    outcome: list[BaseException | httpx.Response] = []

    def send() -> None:
        with httpx.Client(timeout=30) as c:
            try:
                outcome.append(c.post(f"{srv.url}/{KEY}/user", json={"userId": 1}))
            except httpx.TransportError as exc:
                outcome.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    assert srv.wait_for_received(1, timeout=5)  # the request is now held by the delay
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 3
    thread.join(10)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], httpx.TransportError)
    assert srv.calls == []


def test_reject_items(server: TrackingServer, client: httpx.Client) -> None:
    server.reject_items(lambda entry: entry.get("event") == "poison")
    entries = [
        {"type": "event", "event": "fine", "userId": 1},
        {"type": "event", "event": "poison", "userId": 1},
    ]
    r = post(client, server, "bulk", entries)
    assert r.status_code == 400
    assert error(r)["code"] == "BODY_VALIDATION_FAILED"
    assert messages(r) == ["items[1]: rejected by the server"]
    assert server.calls == []
    r = post(client, server, "event", {"event": "poison", "userId": 1})
    assert r.status_code == 400
    assert messages(r) == ["rejected by the server"]
    server.reject_items(None)
    assert post(client, server, "bulk", entries).status_code == 200
    assert server.call_count == 2


def test_reset_faults(server: TrackingServer, client: httpx.Client) -> None:
    server.fail_next(5)
    server.throttle_next(5)
    server.reset_next(5)
    server.reject_items(lambda _: True)
    server.reset_faults()
    assert post(client, server, "user", {"userId": 1}).status_code == 200


def test_concurrent_faults_count_down_exactly(server: TrackingServer) -> None:
    server.fail_next(10)
    statuses: list[int] = []
    lock = threading.Lock()

    def send() -> None:
        with httpx.Client(timeout=10) as c:
            for _ in range(5):
                r = c.post(f"{server.url}/{KEY}/user", json={"userId": 1})
                with lock:
                    statuses.append(r.status_code)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 10 + [500] * 10
    assert server.call_count == 10


# --------------------------------------------------------------------------- records and life cycle


def test_wait_for(server: TrackingServer) -> None:
    assert server.wait_for(0, timeout=0)
    assert not server.wait_for(1, timeout=0.01)

    def send() -> None:
        with httpx.Client(timeout=10) as c:
            for i in range(3):
                c.post(f"{server.url}/{KEY}/user", json={"userId": i})

    thread = threading.Thread(target=send)
    thread.start()
    assert server.wait_for(3, timeout=10)
    assert server.wait_for_requests(3, timeout=10)
    thread.join()
    assert [c["userId"] for c in server.calls] == [0, 1, 2]


def test_clear(server: TrackingServer, client: httpx.Client) -> None:
    post(client, server, "user", {"userId": 1})
    server.clear()
    assert (server.calls, server.requests, server.received) == ([], [], 0)
    assert not server.wait_for(1, timeout=0)


def test_callbacks(client: httpx.Client) -> None:
    seen: list[dict[str, Any]] = []
    records: list[RequestRecord] = []

    def boom(_: RequestRecord) -> None:
        records.append(_)
        raise RuntimeError("a broken callback must not break the server")

    with TrackingServer(on_call=seen.append, on_request=boom) as srv:
        assert post(client, srv, "bulk", [{"type": "user", "userId": 1}]).status_code == 200
        assert post(client, srv, "user", {"userId": ""}).status_code == 400
    assert seen == [{"type": "user", "userId": 1}]
    assert [r.status for r in records] == [200, 400]


def test_restart_on_the_same_port(client: httpx.Client) -> None:
    srv = TrackingServer(port=free_port()).start()  # the port stays free while it is down
    try:
        url = srv.url
        assert post(client, srv, "user", {"userId": 1}).status_code == 200
        srv.stop()
        assert not srv.running
        with pytest.raises(httpx.TransportError):
            client.post(f"{url}/{KEY}/user", json={"userId": 2})
        srv.start()
        assert srv.url == url
        assert post(client, srv, "user", {"userId": 3}).status_code == 200
        assert [c["userId"] for c in srv.calls] == [1, 3]
        with pytest.raises(RuntimeError):
            srv.start()
    finally:
        srv.stop()
    srv.stop()  # idempotent


def test_url_before_start() -> None:
    srv = TrackingServer()
    with pytest.raises(RuntimeError):
        _ = srv.url
    assert TrackingServer(port=8787).url == "http://127.0.0.1:8787"
    assert "stopped" in repr(srv)


def test_the_key_is_never_printed(
    server: TrackingServer, client: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    post(client, server, "user", {"userId": 1})
    post(client, server, "nope", {"userId": 1})
    server.reset_next(1)
    with pytest.raises(httpx.TransportError):
        post(client, server, "user", {"userId": 1})
    out, err = capfd.readouterr()
    assert KEY not in out + err
    assert all(KEY not in repr(r) for r in server.requests)


def test_throughput(server: TrackingServer, client: httpx.Client) -> None:
    items = [
        Item.event("Sent message", i, {"position": "popover"}, company_id="acme")
        for i in range(1000)
    ]
    body = bulk_body(i.body for i in items)
    # CPU time of this process (the server's threads and the client), not wall time: the
    # same on a quiet machine, and not the share other processes (parallel test workers)
    # leave to it on a loaded one
    started = time.process_time()
    for _ in range(20):
        assert (
            client.post(f"{server.url}/{KEY}/bulk", content=body, headers=JSON).status_code == 200
        )
    elapsed = time.process_time() - started
    assert server.call_count == 20_000
    assert elapsed < 5  # ~100,000 items/s or more on a laptop; generous for CI


def test_module_exports() -> None:
    assert set(_server.__all__) == {"RequestRecord", "TrackingServer"}


# --------------------------------------------------------------------------- format_call


@pytest.mark.parametrize(
    ("call", "line"),
    [
        (
            {
                "type": "event",
                "event": "Sent message",
                "userId": 42,
                "companyId": "acme",
                "attributes": {"position": "popover", "version": 3},
                "timestamp": "2021-01-01T13:37:00.000Z",
            },
            'event     user=42 company=acme  "Sent message"  position=popover version=3',
        ),
        (
            {"type": "feedback", "featureId": "f1", "userId": 42, "score": 4, "comment": "nice!"},
            'feedback  user=42 feature=f1 score=4 "nice!"',
        ),
        (
            {
                "type": "feedback",
                "key": "export",
                "userId": 42,
                "companyId": "acme",
                "comment": "two\nlines",
                "source": "widget",
                "question": "How was it?",
            },
            'feedback  user=42 company=acme key=export "two\\nlines"  '
            'source=widget question="How was it?"',
        ),
        (
            {
                "type": "company",
                "companyId": "acme",
                "userId": 42,
                "attributes": {"name": "Acme Corp"},
            },
            'company   company=acme user=42  name="Acme Corp"',
        ),
        (
            {
                "type": "user",
                "userId": 42,
                "attributes": {"name": "Rasmus", "custom_property": True, "n": 12, "x": None},
                "context": {"active": False},
            },
            "user      user=42  name=Rasmus custom_property=true n=12 x=null  (inactive)",
        ),
        (
            {"type": "user", "userId": "a b", "attributes": {"tags": ["a", 1], "a key": {"b": 2}}},
            'user      user="a b"  tags=["a",1] "a key"={"b":2}',
        ),
        ({"type": "user", "userId": 1}, "user      user=1"),
    ],
)
def test_format_call(call: dict[str, Any], line: str) -> None:
    assert format_call(call) == line


def test_format_call_keeps_lines_short() -> None:
    line = format_call(
        {"type": "event", "event": "e" * 500, "userId": 1, "attributes": {"a": "x " * 500}}
    )
    assert "\n" not in line
    assert len(line) < 250


def test_format_rejection() -> None:
    record = RequestRecord(
        "POST", "bulk", 400, 5, 100, "BODY_VALIDATION_FAILED", "m", ("items[3]: bad", "items[4]: x")
    )
    assert format_rejection(record) == "400 BODY_VALIDATION_FAILED items[3]: bad; items[4]: x"
    assert format_rejection(RequestRecord("POST", None, 404, code="NOT_FOUND", message="no")) == (
        "404 NOT_FOUND no"
    )
    assert "reset" in format_rejection(RequestRecord("POST", "bulk", 0))


# --------------------------------------------------------------------------- command line


class Cli:
    """``python -m bucket_logging serve`` in a subprocess, read line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bucket_logging", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        banner = self.proc.stderr if "--json" in args else self.proc.stdout
        assert banner is not None
        first = banner.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert match, first
        self.url = match.group(0)
        self.hint = banner.readline().strip()
        self.reflag_hint = banner.readline().strip()
        banner.readline()  # Ctrl-C to stop

    def stdout_line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().rstrip("\n")

    def stderr_line(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.readline().rstrip("\n")

    def stop(self) -> tuple[str, str]:
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=10)
        return out, err


@pytest.fixture
def cli_factory() -> Iterator[Any]:
    started: list[Cli] = []

    def make(*args: str) -> Cli:
        cli = Cli(*args)
        started.append(cli)
        return cli

    yield make
    for cli in started:
        if cli.proc.poll() is None:
            cli.proc.kill()
            cli.proc.communicate()


def test_cli_prints_each_call(cli_factory: Any, client: httpx.Client) -> None:
    cli: Cli = cli_factory()
    assert cli.hint == f"export BUCKET_TRACKING_URL={cli.url} BUCKET_TRACKING_KEY=dev-local-key"
    assert cli.reflag_hint.startswith(f"or: export REFLAG_API_BASE_URL={cli.url} ")
    r = client.post(
        f"{cli.url}/{KEY}/bulk",
        json=[
            {
                "type": "event",
                "event": "Sent message",
                "userId": 42,
                "companyId": "acme",
                "attributes": {"position": "popover", "version": 3},
            },
            {"type": "company", "companyId": "acme", "userId": 42, "attributes": {"name": "Acme"}},
        ],
    )
    assert r.status_code == 200
    assert cli.stdout_line() == (
        'event     user=42 company=acme  "Sent message"  position=popover version=3'
    )
    assert cli.stdout_line() == "company   company=acme user=42  name=Acme"
    r = client.post(f"{cli.url}/{KEY}/bulk", json=[{"type": "user", "userId": 1}, {"type": "x"}])
    assert r.status_code == 400
    line = cli.stdout_line()
    assert line.startswith("400 BODY_VALIDATION_FAILED items[1]: type must be one of")
    out, err = cli.stop()
    assert cli.proc.returncode == 0
    assert "stopped: 2 call(s) accepted, 1 request(s) refused" in err
    assert KEY not in out + err


def test_cli_json(cli_factory: Any, client: httpx.Client) -> None:
    cli: Cli = cli_factory("--json")
    r = client.post(f"{cli.url}/{KEY}/feedback", json=VALID["feedback"])
    assert r.status_code == 200
    assert orjson.loads(cli.stdout_line()) == {"type": "feedback", **VALID["feedback"]}
    r = client.post(f"{cli.url}/{KEY}/user", json={"userId": True})
    assert r.status_code == 400
    assert cli.stderr_line().startswith("400 BODY_VALIDATION_FAILED userId must be")
    out, _ = cli.stop()
    assert out == ""  # stdout holds only the JSON lines


def test_cli_keys_and_faults(cli_factory: Any, client: httpx.Client) -> None:
    cli: Cli = cli_factory("--key", KEY, "--key", "other", "--fail-first", "1")
    assert post_status(client, f"{cli.url}/{KEY}/user") == 500
    assert cli.stdout_line().startswith("500 INTERNAL_ERROR")
    assert post_status(client, f"{cli.url}/wrong/user") == 400
    assert cli.stdout_line() == "400 INVALID_API_KEY invalid tracking key"
    assert post_status(client, f"{cli.url}/other/user") == 200
    assert cli.stdout_line() == "user      user=1"
    out, err = cli.stop()
    assert KEY not in out + err


def post_status(client: httpx.Client, url: str) -> int:
    return client.post(url, json={"userId": 1}).status_code


def test_cli_port_in_use(server: TrackingServer) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bucket_logging", "serve", "--port", str(server.port)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1
    assert "cannot listen" in proc.stderr


def test_main_without_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().err


def test_cli_serves_both_apis_with_keys_of_both_kinds(
    cli_factory: Any, client: httpx.Client
) -> None:
    reflag = "sec_CliReflagKey-7f8e9d"
    cli: Cli = cli_factory("--key", KEY, "--key", reflag)
    event = {"event": "e", "userId": 1}
    assert client.post(f"{cli.url}/{KEY}/event", json=event).status_code == 200
    bearer = {"Authorization": f"Bearer {reflag}"}
    assert client.post(f"{cli.url}/event", json=event, headers=bearer).status_code == 200
    wrong = {"Authorization": "Bearer sec_wrong-00000000"}
    assert client.post(f"{cli.url}/event", json=event, headers=wrong).status_code == 403
    lines = [cli.stdout_line() for _ in range(3)]
    assert lines[:2] == ['event     user=1  "e"'] * 2
    assert lines[2].startswith("403 FORBIDDEN the key is invalid or not allowed")
    out, err = cli.stop()
    assert all(k not in out + err + "".join(lines) for k in (KEY, reflag))
