"""The relay's probes, on a real relay process: /livez never looks at the destination;
/readyz says 503 while draining (SIGTERM), with the queue over its high-water mark and
no spool, with a spool that cannot be written, and once the destination has failed too
long with nowhere to keep items; /health is /readyz."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import RelayProcess, closed_port_url, poll

pytest.importorskip("uvicorn")

from bucket_logging import TrackingServer

KEY = "trRELAYkey-8e2b4d6f1a3c5079"


def events(n: int) -> bytes:
    return json.dumps(
        [{"bucket_event": "Probed", "user_id": i, "event": "probed"} for i in range(n)]
    ).encode()


def reasons(relay: RelayProcess, path: str = "/readyz") -> list[str]:
    answer = relay.get(path)
    if answer.status_code == 200:
        assert answer.json() == {"ready": True}
        return []
    assert answer.status_code == 503
    found: list[str] = answer.json()["reasons"]
    return found


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_ready_and_live_while_the_destination_answers(
    relays: list[RelayProcess], host: str
) -> None:
    with TrackingServer(tracking_keys=[KEY]) as server:
        relay = RelayProcess(server.url.replace("127.0.0.1", host), KEY, host=host)
        relays.append(relay)
        assert relay.post(events(3)).status_code == 200
        assert server.wait_for(3, 10)
        assert relay.get("/livez").json() == {"live": True}
        assert reasons(relay) == []
        assert reasons(relay, "/health") == []  # /health is /readyz
        assert relay.stop()[0] == 0


def test_livez_stays_200_while_the_destination_is_down_and_readyz_turns_503(
    relays: list[RelayProcess],
) -> None:
    relay = RelayProcess(closed_port_url(), KEY, "--unready-after", "0.5")
    relays.append(relay)
    assert reasons(relay) == []
    assert relay.post(events(2)).status_code == 200  # queued; delivery fails
    assert poll(lambda: any("destination has failed" in r for r in reasons(relay)))
    assert relay.get("/livez").status_code == 200
    assert any("destination has failed" in r for r in reasons(relay, "/health"))


def test_readyz_is_503_with_the_queue_over_its_mark_and_no_spool(
    relays: list[RelayProcess],
) -> None:
    relay = RelayProcess(closed_port_url(), KEY, "--max-pending", "10", "--unready-after", "600")
    relays.append(relay)
    assert relay.post(events(8)).status_code == 200  # 8 of 10: at the mark, not over
    assert reasons(relay) == []
    assert relay.post(events(1)).status_code == 200  # 9 > 80 % of 10
    assert reasons(relay) == [
        "the queue is over its high-water mark (80% of 10 items) and there is no spool"
    ]
    assert relay.get("/livez").status_code == 200


def test_readyz_is_503_while_the_spool_cannot_be_written(
    relays: list[RelayProcess], tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "spool"
    not_a_directory.write_text("a file where the spool's directory should be")
    with TrackingServer(tracking_keys=[KEY]) as server:
        relay = RelayProcess(server.url, KEY, "--spool-dir", str(not_a_directory))
        relays.append(relay)
        assert poll(lambda: reasons(relay) == ["the spool cannot be written"])
        assert relay.get("/livez").status_code == 200
        # it still delivers, from memory
        assert relay.post(events(2)).status_code == 200
        assert server.wait_for(2, 10)


def test_readyz_is_503_during_a_sigterm_drain(relays: list[RelayProcess]) -> None:
    with TrackingServer(tracking_keys=[KEY]) as server:
        relay = RelayProcess(server.url, KEY, "--drain-delay", "30")
        relays.append(relay)
        assert reasons(relay) == []
        relay.signal_stop()
        assert poll(lambda: reasons(relay) == ["draining"])
        assert relay.get("/livez").status_code == 200
        assert relay.post(events(1)).status_code == 503  # load balancers send elsewhere
        relay.signal_stop()  # a second SIGTERM drains at once
        status, err = relay.stop()
        assert status == 0, err
