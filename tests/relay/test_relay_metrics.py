"""GET /metrics on a real relay process (Prometheus' text format): who may read it, and
what it counts; the relay's own log lines as JSON (--log-format json)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from support import RelayProcess, poll

pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

from bucket_logging import TrackingServer

KEY = "trRELAYkey-8e2b4d6f1a3c5079"
TOKEN = "relay-token-5b9d2e7c41f0a6"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_need_the_token_and_count_requests_records_and_items(
    relays: list[RelayProcess],
) -> None:
    with TrackingServer(tracking_keys=[KEY]) as server:
        server.reject_items(lambda entry: entry.get("userId") == 13)
        relay = RelayProcess(server.url, KEY, "--token", TOKEN)
        relays.append(relay)
        assert relay.get("/metrics").status_code == 401
        body = [{"bucket_event": "Metered", "user_id": i} for i in range(10, 15)]
        body += [{"event": "not a tracking call"}]
        assert relay.post(json.dumps([*body, "text", 3]).encode(), TOKEN).status_code == 200
        assert relay.post(b"not json", TOKEN).status_code == 400
        host, port = relay.url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as raw:  # h11's 400
            raw.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc")
            assert raw.recv(100).startswith(b"HTTP/1.1 400")
        assert server.wait_for(4, 10)
        auth = {"Authorization": f"Bearer {TOKEN}"}

        def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            answer = relay.get("/metrics", **auth)
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/plain")
            return samples(answer.text)

        assert poll(lambda: scraped().get(("bucket_relay_items_sent_total", ())) == 4)
        got = scraped()
        ndjson = (("receiver", "ndjson"),)
        assert got[("bucket_relay_requests_total", (("code", "200"), *ndjson))] == 1
        assert got[("bucket_relay_requests_total", (("code", "400"), *ndjson))] == 1
        other = (("receiver", "other"),)
        assert got[("bucket_relay_requests_total", (("code", "400"), *other))] == 1
        assert got[("bucket_relay_records_received_total", ndjson)] == 8
        assert got[("bucket_relay_records_accepted_total", ndjson)] == 5
        refused = "bucket_relay_records_refused_total"
        assert got[(refused, (("reason", "not_an_object"), *ndjson))] == 2
        assert got[(refused, (("reason", "not_tracked"), *ndjson))] == 1
        assert got[("bucket_relay_items_dropped_total", (("reason", "rejected"),))] == 1
        assert got[("bucket_relay_items_dropped_total", (("reason", "queue_full"),))] == 0
        assert got[("bucket_relay_bulk_requests_total", ())] >= 2  # a 400, then halves
        assert got[("bucket_relay_request_duration_seconds_count", ndjson)] == 2
        assert got[("bucket_relay_queue_capacity_items", ())] > 0
        assert ("bucket_relay_build_info", (("version", _version()),)) in got
        status, err = relay.stop()
        assert status == 1  # the rejected item was lost, as the summary says
        assert TOKEN not in err and KEY not in err


def _version() -> str:
    from bucket_logging import __version__

    return __version__


def test_json_log_lines_are_one_object_a_line_without_the_token_or_key(
    relays: list[RelayProcess],
) -> None:
    """(With --no-metrics: GET /metrics answers 404, the probes still answer.)"""
    with TrackingServer(tracking_keys=[KEY]) as server:
        relay = RelayProcess(
            server.url, KEY, "--token", TOKEN, "--log-format", "json", "--no-metrics"
        )
        relays.append(relay)
        assert relay.get("/metrics", Authorization=f"Bearer {TOKEN}").status_code == 404
        # the browser rules: a page, or a site's name rebound to 127.0.0.1, reads nothing
        for page in ({"Origin": "https://evil.example"}, {"Host": "evil.example"}):
            assert relay.get("/metrics", **page).status_code == 403
        assert relay.get("/readyz", Host="evil.example").status_code == 200  # (a probe)
        assert relay.get("/readyz").status_code == 200
        assert relay.post(b"not json", TOKEN).status_code == 400
        assert relay.post(b"[]", "wrong-token").status_code == 401
        status, err = relay.stop()
    assert status == 0
    assert TOKEN not in err and KEY not in err
    lines = [json.loads(line) for line in err.splitlines()]  # every line is an object
    assert all({"time", "level", "message"} <= set(line) for line in lines)
    assert all(line["time"].endswith("Z") for line in lines)
    refused = [line for line in lines if line.get("status") == 400]
    assert refused and refused[0]["level"] == "warning"
    assert any("relay on http://" in line["message"] for line in lines)
    assert any(line["message"].startswith("relay stopped") for line in lines)


def test_the_multiprocess_directory_starts_empty_of_earlier_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory the environment names is emptied of an earlier run's values (a stale
    worker's counters would add up with the new ones); other files stay."""
    from bucket_logging._relay import metrics

    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("kept")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert metrics.multiprocess_dir() == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    # prometheus_client is imported here already: too late to switch its mode
    assert metrics.multiprocess_dir() is None
