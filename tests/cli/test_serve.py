"""The command line (``bucket_logging.__main__``), run in this process.

``main(["serve", ...])`` serves on the calling thread until SIGTERM or Ctrl-C, as
in a terminal: the tests run it on the main thread with ``sys.stdout`` and
``sys.stderr`` replaced by line collectors, drive it with an HTTP client from a
helper thread, and stop it with a signal. (tests/server/test_server.py runs the same
command in a subprocess.)
"""

from __future__ import annotations

import io
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bucket_logging._cli.main import format_call, format_rejection, main
from bucket_logging._server.server import RequestRecord, TrackingServer

KEY = "trCliSecretKey-0a1b2c3d"


class Collector(io.RawIOBase):
    """A write-only byte stream that collects complete lines, for waiting on them.

    ``broken_after=n``: once ``n`` lines were written, writes fail like a closed pipe.
    """

    def __init__(self, broken_after: int | None = None) -> None:
        super().__init__()
        self._cond = threading.Condition()
        self._partial = b""
        self.lines: list[str] = []
        self.broken_after = broken_after
        self.failed_writes = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        with self._cond:
            if self.broken_after is not None and len(self.lines) >= self.broken_after:
                self.failed_writes += 1
                raise BrokenPipeError(32, "Broken pipe")
            self._partial += chunk
            *done, self._partial = self._partial.split(b"\n")
            self.lines.extend(line.decode("ascii") for line in done)
            self._cond.notify_all()
        return len(chunk)

    def wait_lines(self, n: int, timeout: float = 10.0) -> list[str]:
        """The first ``n`` lines, once written (fails on timeout)."""
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.lines) >= n, timeout), self.lines
            return self.lines[:n]


def text_stream(raw: Collector) -> io.TextIOWrapper:
    """A terminal-like text stream: ASCII only (a C locale), strict, line buffered."""
    return io.TextIOWrapper(
        raw,  # type: ignore[arg-type]
        encoding="ascii",
        errors="strict",
        line_buffering=True,
        write_through=True,
    )


@dataclass
class Run:
    """One ``serve`` run: its streams, its exit status and what the client did."""

    out: Collector
    err: Collector
    stdout: io.TextIOWrapper
    stderr: io.TextIOWrapper
    url: str = ""
    status: int | None = None
    failure: list[BaseException] = field(default_factory=list)


@pytest.fixture
def signals() -> Iterator[None]:
    """``serve`` on the main thread installs SIGTERM and SIGINT handlers: restore them."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def streams(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    def make(broken_stdout_after: int | None = None) -> Run:
        out, err = Collector(broken_stdout_after), Collector()
        run = Run(out, err, text_stream(out), text_stream(err))
        monkeypatch.setattr(sys, "stdout", run.stdout)
        monkeypatch.setattr(sys, "stderr", run.stderr)
        return run

    return make


def serve(
    run: Run,
    args: list[str],
    client_side: Callable[[Run, httpx.Client], None],
    *,
    stop: signal.Signals = signal.SIGTERM,
    banner_on_stderr: bool = False,
) -> Run:
    """Run ``serve --port 0 *args`` on this thread; ``client_side`` runs in a helper
    thread once the banner is out, then ``stop`` is sent to this thread."""
    main_thread = threading.get_ident()
    banner = run.err if banner_on_stderr else run.out
    returned = threading.Event()

    def helper() -> None:
        try:
            lines = banner.wait_lines(4)
        except BaseException as exc:  # no banner: the server never listened
            run.failure.append(exc)
            return
        match = re.search(r"http://\S+:\d+", lines[0])
        assert match is not None, lines
        run.url = match.group(0)
        try:
            with httpx.Client(timeout=10) as client:
                client_side(run, client)
        except BaseException as exc:
            run.failure.append(exc)
        finally:
            # A signal that lands while the serving thread is busy elsewhere is acted
            # on at its next wait; re-send a few times rather than hang the suite.
            for _ in range(5):
                signal.pthread_kill(main_thread, stop)
                if returned.wait(3):
                    break

    thread = threading.Thread(target=helper)
    thread.start()
    try:
        run.status = main(["serve", "--port", "0", *args])
    finally:
        returned.set()
        thread.join(15)
    assert not thread.is_alive()
    if run.failure:
        raise run.failure[0]
    return run


def post(client: httpx.Client, url: str, method: str, body: Any, key: str = KEY) -> int:
    return client.post(f"{url}/{key}/{method}", json=body).status_code


# --------------------------------------------------------------------------- serve


def test_serve_prints_calls_and_rejections_then_a_summary_on_sigterm(
    streams: Callable[..., Run], signals: None
) -> None:
    def client_side(run: Run, client: httpx.Client) -> None:
        body = [
            {"type": "event", "event": "Sent message", "userId": 42, "companyId": "acme"},
            {"type": "user", "userId": 42, "attributes": {"name": "Rasmus"}},
        ]
        assert post(client, run.url, "bulk", body) == 200
        assert post(client, run.url, "user", {"userId": ""}) == 400
        assert post(client, run.url, "nope", {"userId": 1}) == 404
        run.out.wait_lines(4 + 4)

    run = serve(streams(), [], client_side)
    assert run.status == 0
    banner, calls = run.out.lines[:4], run.out.lines[4:]
    assert banner == [
        f"Bucket tracking server on {run.url} (any tracking key accepted)",
        f"  export BUCKET_TRACKING_URL={run.url} BUCKET_TRACKING_KEY=dev-local-key",
        f"  or: export REFLAG_API_BASE_URL={run.url} REFLAG_SECRET_KEY=sec_dev_local"
        "  (Reflag's Runtime API)",
        f"  Watch the calls live at {run.url}/ ; Ctrl-C to stop",
    ]
    assert calls == [
        'event     user=42 company=acme  "Sent message"',
        "user      user=42  name=Rasmus",
        "400 BODY_VALIDATION_FAILED userId must not be empty",
        "404 NOT_FOUND no such API method",
    ]
    assert run.err.lines == ["stopped: 2 call(s) accepted, 2 request(s) refused"]
    assert all(KEY not in line for line in run.out.lines + run.err.lines)


def test_sigint_stops_it_even_when_started_with_sigint_ignored(
    streams: Callable[..., Run], signals: None
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. started in a script's background

    def client_side(run: Run, client: httpx.Client) -> None:
        assert post(client, run.url, "user", {"userId": 1}) == 200
        run.out.wait_lines(5)

    run = serve(streams(), [], client_side, stop=signal.SIGINT)
    assert run.status == 0
    assert run.err.lines == ["stopped: 1 call(s) accepted, 0 request(s) refused"]


def test_json_mode_prints_calls_as_json_lines_on_stdout_only(
    streams: Callable[..., Run], signals: None
) -> None:
    feedback = {"featureId": "f1", "userId": 42, "score": 4, "comment": "nice"}

    def client_side(run: Run, client: httpx.Client) -> None:
        assert post(client, run.url, "feedback", feedback) == 200
        assert post(client, run.url, "user", {"userId": True}) == 400
        run.out.wait_lines(1)
        run.err.wait_lines(4 + 1)

    run = serve(streams(), ["--json"], client_side, banner_on_stderr=True)
    assert run.status == 0
    assert [orjson.loads(line) for line in run.out.lines] == [{"type": "feedback", **feedback}]
    assert run.err.lines[0].startswith("Bucket tracking server on http://127.0.0.1:")
    assert run.err.lines[4].startswith("400 BODY_VALIDATION_FAILED userId must")
    assert run.err.lines[5:] == ["stopped: 1 call(s) accepted, 1 request(s) refused"]


def test_keys_are_counted_once_and_others_refused(
    streams: Callable[..., Run], signals: None
) -> None:
    def client_side(run: Run, client: httpx.Client) -> None:
        assert post(client, run.url, "user", {"userId": 1}, key="other") == 200
        assert post(client, run.url, "user", {"userId": 2}, key="wrong") == 400
        run.out.wait_lines(4 + 2)

    args = ["--key", KEY, "--key", "other", "--key", KEY]
    run = serve(streams(), args, client_side)
    assert run.out.lines[0].endswith("(2 tracking key(s) accepted)")
    assert "dev-local-key" not in run.out.lines[1]  # (a key the server would refuse)
    assert run.out.lines[1].endswith("(and BUCKET_TRACKING_KEY: one of the --key values)")
    assert run.out.lines[2].endswith("(and REFLAG_SECRET_KEY: one of the --key values)")
    assert "sec_dev_local" not in run.out.lines[2]
    assert run.out.lines[4:] == ["user      user=1", "400 INVALID_API_KEY invalid tracking key"]
    assert all(KEY not in line for line in run.out.lines + run.err.lines)


def test_fail_first_answers_500_then_accepts(streams: Callable[..., Run], signals: None) -> None:
    def client_side(run: Run, client: httpx.Client) -> None:
        assert [post(client, run.url, "user", {"userId": 1}) for _ in range(3)] == [500, 500, 200]
        run.out.wait_lines(4 + 3)

    run = serve(streams(), ["--fail-first", "2"], client_side)
    assert run.out.lines[4:] == [
        "500 INTERNAL_ERROR failure injected by the test server",
        "500 INTERNAL_ERROR failure injected by the test server",
        "user      user=1",
    ]
    assert run.err.lines == ["stopped: 1 call(s) accepted, 2 request(s) refused"]


def test_delay_holds_every_answer(streams: Callable[..., Run], signals: None) -> None:
    took: list[float] = []

    def client_side(run: Run, client: httpx.Client) -> None:
        started = time.monotonic()
        assert post(client, run.url, "user", {"userId": 1}) == 200
        took.append(time.monotonic() - started)

    serve(streams(), ["--delay", "0.3"], client_side)
    assert took[0] >= 0.3


def test_unencodable_characters_are_escaped_not_fatal(
    streams: Callable[..., Run], signals: None
) -> None:
    # an ASCII-only terminal (C locale): the line is printed with escapes, and the
    # server goes on serving
    def client_side(run: Run, client: httpx.Client) -> None:
        assert post(client, run.url, "event", {"event": "caf\u00e9 \u2615", "userId": 1}) == 200
        assert post(client, run.url, "user", {"userId": 2}) == 200
        run.out.wait_lines(4 + 2)

    run = serve(streams(), [], client_side)
    assert run.out.lines[4:] == ['event     user=1  "caf\\xe9 \\u2615"', "user      user=2"]
    assert run.status == 0


def test_a_closed_stdout_does_not_stop_the_server(
    streams: Callable[..., Run], signals: None
) -> None:
    # e.g. piped into `head -4`: the banner got through, then the pipe is gone
    def client_side(run: Run, client: httpx.Client) -> None:
        for i in range(3):
            assert post(client, run.url, "user", {"userId": i}) == 200
        assert post(client, run.url, "user", {"userId": ""}) == 400

    run = serve(streams(broken_stdout_after=4), [], client_side)
    assert run.status == 0
    assert len(run.out.lines) == 4  # the banner only
    assert run.out.failed_writes >= 4
    assert run.err.lines == ["stopped: 3 call(s) accepted, 1 request(s) refused"]


def test_json_mode_with_stdout_closed(streams: Callable[..., Run], signals: None) -> None:
    def client_side(run: Run, client: httpx.Client) -> None:
        run.stdout.close()  # writing to it now raises ValueError
        assert post(client, run.url, "user", {"userId": 1}) == 200

    run = serve(streams(), ["--json"], client_side, banner_on_stderr=True)
    assert run.status == 0
    assert run.out.lines == []
    assert run.err.lines[-1] == "stopped: 1 call(s) accepted, 0 request(s) refused"


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")
def test_ipv6_host(streams: Callable[..., Run], signals: None) -> None:
    def client_side(run: Run, client: httpx.Client) -> None:
        assert post(client, run.url, "user", {"userId": 6}) == 200
        run.out.wait_lines(5)

    run = serve(streams(), ["--host", "::1"], client_side)
    assert re.fullmatch(r"http://\[::1\]:\d+", run.url)
    assert run.out.lines[4] == "user      user=6"


# --------------------------------------------------------------------------- failures


def test_port_in_use_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = io.StringIO(), io.StringIO()  # not TextIOWrappers: used as they are
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    status: list[int] = []
    with TrackingServer() as busy:
        # on another thread than the main one: no signal handlers are installed
        thread = threading.Thread(
            target=lambda: status.append(main(["serve", "--port", str(busy.port)]))
        )
        thread.start()
        thread.join(10)
        with httpx.Client(timeout=5) as client:  # the one listening is unharmed
            assert post(client, busy.url, "user", {"userId": 1}) == 200
    assert status == [1]
    assert out.getvalue() == ""
    [line] = err.getvalue().splitlines()
    assert line.startswith(f"bucket-logging: cannot listen on 127.0.0.1:{busy.port}: ")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["serve", "--port", "eighty"], "argument --port: invalid int value: 'eighty'"),
        (["serve", "--delay", "soon"], "argument --delay: invalid float value: 'soon'"),
        (["serve", "--fail-first"], "argument --fail-first: expected one argument"),
        (["serve", "--verbose"], "unrecognized arguments: --verbose"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert fragment in err
    assert err.startswith("usage: bucket-logging")


def test_python_m_without_a_command_prints_help_and_exits_2() -> None:
    # (a subprocess: pytest rewrites the installed package's modules, being its plugin)
    done = subprocess.run(
        [sys.executable, "-m", "bucket_logging"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "serve" in done.stderr


def test_help_lists_the_serve_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--json", "--key", "--fail-first", "--delay"):
        assert option in out


# --------------------------------------------------------------------------- line formats


def test_format_rejection_keeps_one_short_line() -> None:
    record = RequestRecord("POST", "event", 400, 1, 10, "BODY_VALIDATION_FAILED", "first\r\nsecond")
    assert format_rejection(record) == "400 BODY_VALIDATION_FAILED first\\r\\nsecond"
    long = RequestRecord(
        "POST", "bulk", 400, code="X", errors=tuple(f"e{i}" * 20 for i in range(20))
    )
    line = format_rejection(long)
    assert len(line) == len("400 X ") + 400
    assert line.endswith("\u2026")
    assert format_rejection(RequestRecord("POST", None, 0)) == (
        "--- ? request dropped without a response (connection reset)"
    )
    assert format_rejection(RequestRecord("POST", "bulk", 413, code="PAYLOAD_TOO_LARGE")) == (
        "413 PAYLOAD_TOO_LARGE"
    )


@pytest.mark.parametrize(
    ("call", "line"),
    [
        (
            {"type": "feedback", "featureId": "f", "userId": 1, "comment": None},
            "feedback  user=1 feature=f",
        ),
        (
            {"type": "feedback", "featureId": "f", "userId": 1, "comment": 42},
            "feedback  user=1 feature=f 42",
        ),
        ({"type": "user", "userId": 1, "attributes": [1, 2]}, "user      user=1  attributes=[1,2]"),
        ({"type": "user", "userId": set()}, "user      user=set()"),  # not JSON: its repr
        ({"userId": 1}, "?         userId=1"),
    ],
)
def test_format_call_of_odd_calls(call: dict[str, Any], line: str) -> None:
    assert format_call(call) == line


def test_serve_with_a_plan_prints_each_calls_violations_and_the_page_has_them(
    streams: Callable[..., Run], signals: None, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("events:\n  Sent message:\n    attributes:\n      channel: {type: string}\n")
    answers: list[dict[str, Any]] = []

    def client_side(run: Run, client: httpx.Client) -> None:
        body = [
            {"type": "event", "event": "Sent message", "userId": 1, "attributes": {"channel": 7}},
            {"type": "event", "event": "Sent mesage", "userId": 2},
        ]
        assert post(client, run.url, "bulk", body) == 200
        run.out.wait_lines(4 + 4)
        answers.append(client.get(f"{run.url}/_page/records").json())

    run = serve(streams(), ["--plan", str(plan)], client_side)
    assert run.status == 0
    assert run.out.lines[4:] == [
        'event     user=1  "Sent message"  channel=7',
        "  ! tracking plan: wrong_type: 'channel' must be string (got 7)",
        'event     user=2  "Sent mesage"',
        "  ! tracking plan: unplanned_event: event 'Sent mesage' is not planned "
        "(a likely typo of 'Sent message'?)",
    ]
    [page] = answers
    assert page["violations"] == [
        ["wrong_type: 'channel' must be string (got 7)"],
        ["unplanned_event: event 'Sent mesage' is not planned (a likely typo of 'Sent message'?)"],
    ]
    assert page["plan"] == {
        "source": str(plan), "planned": 1, "seen": ["Sent message"], "never": [],
        "violations": 2,
    }  # fmt: skip
