"""Reflag's Runtime API beside Bucket's tracking API (issue 11).

Integration tests run a sender against the library's own TrackingServer, which speaks
both APIs; unit tests use httpx.MockTransport to see the exact requests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from support import FAST, KEY, Endpoint

import bucket_logging
from bucket_logging import (
    REFLAG_BASE_URL,
    REFLAG_EU_BASE_URL,
    BucketHandler,
    BulkSender,
    ConfigurationError,
    DeliveryError,
    Item,
    TrackingServer,
    get_sender,
)
from bucket_logging._sender.config import DEFAULT_BASE_URL
from bucket_logging._spool.rows import destination

Make = Callable[..., BulkSender]

#: A distinctive Reflag secret key: asserted never to show up anywhere.
RKEY = "sec_REFLAGsecret-9d8c7b6a5f4e"

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def server(host: str) -> Iterator[TrackingServer]:
    """The server by each host name in turn (conftest's ``host``)."""
    with TrackingServer(tracking_keys={KEY, RKEY}) as srv:
        srv.host_name = host  # type: ignore[attr-defined]
        yield srv


def url_of(server: TrackingServer) -> str:
    return f"http://{server.host_name}:{server.port}"  # type: ignore[attr-defined]


@pytest.fixture
def make(server: TrackingServer, make_sender: Make) -> Make:
    """make_sender with the Reflag key, closing its senders before the server stops."""

    def build(**options: Any) -> BulkSender:
        options.setdefault("tracking_key", RKEY)
        options.setdefault("base_url", url_of(server))
        options.setdefault("flush_interval", 60)
        return make_sender(**options)

    return build


def every_kind() -> list[Item]:
    return [
        Item.user(1, {"name": "Ada"}, active=True),
        Item.company("acme", {"plan": "pro"}, user_id=1),
        Item.event("Sent message", 1, {"size": 3}, company_id="acme"),
        Item.feedback(1, feature_id="f1", score=5, comment="nice"),
        Item.feedback(1, key="search", comment="slow"),
    ]


# -- integration: the Runtime API against the local server ---------------------------


def test_each_kind_goes_through_the_runtime_api(server: TrackingServer, make: Make) -> None:
    sender = make()
    for item in every_kind():
        assert sender.enqueue(item)
    assert sender.flush(10)
    calls = server.calls
    assert sorted(c["type"] for c in calls) == sorted(
        ["user", "company", "event", "feedback", "feedback"]
    )
    requests = server.requests
    assert all(r.accepted for r in requests)
    # feedback one call each at /feedback; everything else in one /bulk body
    paths = sorted(r.path for r in requests)
    assert paths == ["/bulk", "/feedback", "/feedback"]
    assert all(r.api == "runtime" and r.auth == "bearer" for r in requests)
    bulk = next(r for r in requests if r.path == "/bulk")
    assert bulk.items == 3
    feedback = [c for c in calls if c["type"] == "feedback"]
    assert {c.get("featureId") for c in feedback} == {"f1", None}
    assert {c.get("key") for c in feedback} == {None, "search"}
    assert sender.stats.sent == 5
    assert sender.stats.requests == 3


def test_a_rejected_feedback_is_that_item_alone(server: TrackingServer, make: Make) -> None:
    server.reject_items(lambda call: call.get("comment") == "bad")
    errors: list[DeliveryError] = []
    sender = make(on_error=errors.append)
    sender.enqueue(Item.event("e", 1))
    sender.enqueue(Item.feedback(1, feature_id="f", comment="bad"))
    sender.enqueue(Item.feedback(1, feature_id="f", comment="good"))
    assert sender.flush(10)
    stats = sender.stats
    assert (stats.sent, stats.rejected, stats.requests) == (2, 1, 3)
    assert [e.reason for e in errors] == ["rejected"]


def test_a_feedback_call_failing_with_500_is_retried(server: TrackingServer, make: Make) -> None:
    sender = make()
    server.fail_next(1)
    sender.enqueue(Item.feedback(1, feature_id="f", score=2))
    assert sender.flush(10)
    assert sender.stats.sent == 1
    assert sender.stats.retried == 1
    assert [r.status for r in server.requests] == [500, 200]


def test_a_403_is_a_key_problem_after_one_request(
    server: TrackingServer, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sec_WRONGkey-0123456789"
    errors: list[DeliveryError] = []
    sender = make(tracking_key=wrong, on_error=errors.append)
    with caplog.at_level(logging.DEBUG):
        for i in range(3):
            sender.enqueue(Item.event("e", i))
            sender.enqueue(Item.feedback(i, feature_id="f", score=1))
        assert sender.flush(10)
    assert sender.stats.requests == 1  # neither retried nor bisected
    assert [r.status for r in server.requests] == [403]
    assert sender.stats.dropped == {"client_error": 6}
    assert sum(e.count for e in errors) == 6 and {e.status for e in errors} == {403}
    assert "the key is invalid or not allowed" in str(errors[0])
    text = caplog.text + repr(sender) + str(errors[0])
    assert "invalid or not allowed" in caplog.text
    assert wrong not in text and RKEY not in text


def test_env_only_configuration(server: TrackingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLAG_SECRET_KEY", RKEY)
    monkeypatch.setenv("REFLAG_API_BASE_URL", url_of(server))
    sender = BulkSender(flush_interval=60, **FAST)
    try:
        assert sender.api == "runtime"
        assert sender.base_url == url_of(server)
        sender.enqueue(Item.event("from env", 7))
        assert sender.flush(10)
    finally:
        sender.close(1)
    assert [(r.path, r.auth, r.status) for r in server.requests] == [("/bulk", "bearer", 200)]
    assert server.calls[0]["event"] == "from env"


def test_both_apis_in_one_process(server: TrackingServer) -> None:
    url = url_of(server)
    seed = logging.getLogger("test_reflag.seed")
    new = logging.getLogger("test_reflag.reflag")
    handlers = [
        BucketHandler(KEY, base_url=url, flush_interval=60, **FAST),
        BucketHandler(RKEY, base_url=url, flush_interval=60, **FAST),
    ]
    try:
        seed.addHandler(handlers[0])
        new.addHandler(handlers[1])
        for logger in (seed, new):
            logger.setLevel(logging.INFO)
            logger.propagate = False
        senders = {get_sender(KEY, base_url=url), get_sender(RKEY, base_url=url)}
        assert len(senders) == 2
        seed.info("x", extra={"bucket_event": "Seed", "user_id": 1})
        new.info("x", extra={"bucket_event": "Reflag", "user_id": 2})
        new.info("x", extra={"bucket_feedback": {"feature_id": "f", "score": 4}, "user_id": 2})
        assert bucket_logging.flush(10)
    finally:
        for h, logger in zip(handlers, (seed, new), strict=True):
            logger.removeHandler(h)
            h.close()
    by_api = sorted((r.api, r.path, r.auth) for r in server.requests)
    assert by_api == [
        ("runtime", "/bulk", "bearer"),
        ("runtime", "/feedback", "bearer"),
        ("tracking", "/<key>/bulk", "path"),
    ]
    assert sorted(c.get("event", "") for c in server.calls) == ["", "Reflag", "Seed"]


# -- the local server speaks both ----------------------------------------------------


def test_server_runtime_routes() -> None:
    with TrackingServer(tracking_keys={RKEY}) as srv, httpx.Client() as client:
        body = {"userId": 1, "event": "e"}
        bearer = {"Authorization": f"Bearer {RKEY}"}
        assert client.post(f"{srv.url}/event", json=body, headers=bearer).status_code == 200
        assert client.post(f"{srv.url}/event", json=body).status_code == 403
        wrong = {"Authorization": "Bearer sec_nope"}
        r = client.post(f"{srv.url}/bulk", json=[], headers=wrong)
        assert r.status_code == 403
        assert "invalid or not allowed" in r.json()["error"]["message"]
        assert client.post(f"{srv.url}/{RKEY}/bulk", json=[]).status_code == 200
    with TrackingServer() as srv, httpx.Client() as client:  # any sec_/pub_ key
        query = f"{srv.url}/bulk?publishableKey=pub_abc"
        assert client.post(query, json=[]).status_code == 200
        assert srv.requests[-1].auth == "query"
        r = client.post(f"{srv.url}/bulk", json=[], headers={"Authorization": "Bearer tr_x"})
        assert r.status_code == 403
    assert all(RKEY not in r.path for r in srv.requests)


# -- unit: the exact requests, the configuration ------------------------------------


def test_runtime_requests_carry_the_key_in_a_header_only(make_sender: Make) -> None:
    endpoint = Endpoint()
    sender = make_sender(tracking_key=RKEY, transport=endpoint.transport(), flush_interval=60)
    sender.enqueue(Item.event("e", 1))
    sender.enqueue(Item.feedback(1, feature_id="f", score=3))
    assert sender.flush(10)
    urls = sorted(seen.url for seen in endpoint.requests)
    assert urls == [f"{REFLAG_BASE_URL}/bulk", f"{REFLAG_BASE_URL}/feedback"]
    for seen in endpoint.requests:
        assert seen.headers["authorization"] == f"Bearer {RKEY}"
        assert seen.headers["reflag-sdk-version"].startswith("bucket-logging-python/")
        assert RKEY not in seen.url
    single = next(s for s in endpoint.requests if s.url.endswith("/feedback"))
    body = orjson.loads(single.body)
    assert body.pop("timestamp").endswith("Z")
    assert body == {"userId": 1, "featureId": "f", "score": 3}  # no "type"


def test_tracking_requests_are_unchanged(make_sender: Make) -> None:
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=60)
    sender.enqueue(Item.event("e", 1))
    sender.enqueue(Item.feedback(1, feature_id="f", score=3))
    assert sender.flush(10)
    assert [s.url for s in endpoint.requests] == [f"{DEFAULT_BASE_URL}/{KEY}/bulk"]
    assert "authorization" not in endpoint.requests[0].headers
    assert len(endpoint.requests[0].items) == 2


def test_the_key_chooses_the_api_and_api_overrides() -> None:
    runtime = BulkSender("sec_abc", offline=True)
    assert (runtime.api, runtime.base_url) == ("runtime", REFLAG_BASE_URL)
    assert BulkSender("pub_abc", offline=True).api == "runtime"
    assert BulkSender("trKey", offline=True).api == "tracking"
    forced = BulkSender("sec_abc", api="tracking", offline=True)
    assert (forced.api, forced.base_url) == ("tracking", DEFAULT_BASE_URL)
    proxy = BulkSender("anything", api="runtime", base_url="http://proxy:1/", offline=True)
    assert proxy.config.endpoint == "http://proxy:1/bulk"
    assert proxy.config.headers["Authorization"] == "Bearer anything"
    eu = BulkSender("sec_abc", base_url=REFLAG_EU_BASE_URL, offline=True)
    assert eu.config.endpoint == "https://front-eu.reflag.com/bulk"
    with pytest.raises(ConfigurationError, match="api must be"):
        BulkSender("sec_abc", api="graphql", offline=True)
    assert "sec_abc" not in repr(runtime) and "sec_abc" not in repr(runtime.config)


def test_environment_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLAG_SECRET_KEY", "sec_env")
    monkeypatch.setenv("REFLAG_API_BASE_URL", "http://reflag-env:1")
    monkeypatch.setenv("REFLAG_OFFLINE", "true")
    sender = BulkSender()
    assert sender.offline and sender.api == "runtime"
    assert sender.base_url == "http://reflag-env:1"
    monkeypatch.setenv("BUCKET_TRACKING_KEY", "trBucketEnv")
    monkeypatch.setenv("BUCKET_TRACKING_URL", "http://bucket-env:1")
    sender = BulkSender()
    assert (sender.api, sender.base_url) == ("tracking", "http://bucket-env:1")
    sender = BulkSender("sec_arg", base_url="http://arg:1")
    assert (sender.api, sender.base_url) == ("runtime", "http://arg:1")
    monkeypatch.setenv("REFLAG_OFFLINE", "off")
    monkeypatch.delenv("BUCKET_TRACKING_KEY")
    monkeypatch.delenv("REFLAG_SECRET_KEY")
    with pytest.raises(ConfigurationError, match="REFLAG_SECRET_KEY"):
        BulkSender(require_key=True)


def test_the_spool_keeps_the_apis_apart() -> None:
    tracking = BulkSender("sec_same", api="tracking", offline=True).config
    runtime = BulkSender("sec_same", offline=True).config
    assert destination(tracking.destination) != destination(runtime.destination)
    # the tracking API's destination is what it always was: existing spools still match
    assert destination(tracking.destination) == destination("sec_same")


def test_a_shared_spool_directory_keeps_the_apis_apart(tmp_path: Any, make_sender: Make) -> None:
    spool = tmp_path / "spool"
    with TrackingServer(tracking_keys={"sec_another"}) as srv:  # 403: left in the spool
        first = make_sender(tracking_key=RKEY, base_url=srv.url, spool_dir=spool, flush_interval=60)
        for i in range(20):
            first.enqueue(Item.event("Spooled", i))
        assert first.flush(10)
        assert first.stats.spooled == 20
        first.close(2)
    with TrackingServer(tracking_keys={RKEY}) as srv:
        # the same key on the tracking API (as a proxy might set it): not its rows
        other = make_sender(
            tracking_key=RKEY, api="tracking", base_url=srv.url, spool_dir=spool, flush_interval=60
        )
        other.enqueue(Item.event("Own", 100))
        assert other.flush(10)
        same = make_sender(tracking_key=RKEY, base_url=srv.url, spool_dir=spool, flush_interval=60)
        assert srv.wait_for(21, timeout=15)
        assert same.flush(10)
        assert other.stats.replayed == 0 and same.stats.replayed == 20
        spooled = [r for r in srv.requests if r.items and r.path == "/bulk"]
        assert sum(r.items for r in spooled) == 20
        assert all(r.api == "runtime" and r.auth == "bearer" for r in spooled)


def test_an_outage_spends_one_retry_budget_for_all_the_feedback(make_sender: Make) -> None:
    endpoint = Endpoint(lambda request, n: httpx.Response(503))
    errors: list[DeliveryError] = []
    sender = make_sender(
        tracking_key=RKEY,
        transport=endpoint.transport(),
        flush_interval=60,
        retry_budget=0.2,
        on_error=errors.append,
    )
    for i in range(10):
        sender.enqueue(Item.feedback(i, feature_id="f", score=1))
    sender.enqueue(Item.event("e", 1))
    assert sender.flush(10)
    # the first feedback call's retries, then nothing more for the rest of the batch
    assert {s.url for s in endpoint.requests} == {f"{REFLAG_BASE_URL}/feedback"}
    assert sender.stats.dropped == {"retries_exhausted": 11}
    assert sum(e.count for e in errors) == 11
