"""The spool file is safe to use: one others could write, or another user's, is refused;
a new spool file is this user's alone; an operation that runs too long (a locked or slow
SQLite file) is interrupted.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import KEY, Endpoint

from bucket_logging import BulkSender, Item
from bucket_logging._spool.rows import destination
from bucket_logging._spool.store import SPOOL_FILE, SpoolStore


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Path]:
    """A spool holding one free batch of this key (two items)."""
    directory = tmp_path / "spool"
    store = SpoolStore(str(directory), destination(KEY), 1 << 28, 86400.0)
    store.open()
    store.insert([Item.event("old", 1).body, Item.event("old", 2).body], False, frozenset())
    store.release_all()
    store.close()
    yield directory


def spool_given_up(directory: Path, caplog: pytest.LogCaptureFixture, why: str) -> None:
    """A sender gives the spool at ``directory`` up (at ERROR, saying ``why``) and
    delivers from memory."""
    caplog.set_level(logging.WARNING, logger="bucket_logging")
    endpoint = Endpoint()
    sender = BulkSender(KEY, transport=endpoint.transport(), spool_dir=directory)
    try:
        for i in range(5):
            assert sender.enqueue(Item.event("new", i))
        assert sender.flush(10)
    finally:
        sender.close(2)
    assert [c["event"] for c in endpoint.delivered] == ["new"] * 5
    given_up = [r for r in caplog.records if f"cannot be used ({why}" in r.getMessage()]
    assert given_up and given_up[0].levelno == logging.ERROR, caplog.text


def spool_refused(directory: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool_given_up(directory, caplog, "PermissionError")


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX owners and modes")
def test_a_spool_directory_others_can_write_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o700)
    directory.chmod(0o777)
    spool_refused(directory, caplog)
    assert not (directory / SPOOL_FILE).exists()


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX owners and modes")
def test_a_spool_file_others_can_write_is_refused(
    spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (spool / SPOOL_FILE).chmod(0o666)
    spool_refused(spool, caplog)


@pytest.mark.skipif(getattr(os, "geteuid", lambda: 1)() != 0, reason="only root gives files away")
def test_a_spool_of_another_user_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, 12345, 12345)
    spool_refused(directory, caplog)


def test_a_new_spool_file_is_this_users_alone(spool: Path, tmp_path: Path) -> None:
    old = os.umask(0o002)  # a permissive umask: the file must not inherit it
    try:
        store = SpoolStore(str(tmp_path / "new"), destination(KEY), 1 << 28, 86400.0)
        store.open()
        store.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new" / SPOOL_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


# ------------------------------------------------------------- bounded SQLite operations


def test_a_spool_operation_that_runs_too_long_is_interrupted(
    spool: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every SQLite call is bounded: past CALL_SECONDS inside SQLite it is interrupted,
    the spool is given up (reported) and the sender carries on in memory."""
    from bucket_logging._spool import store as _spool_store

    monkeypatch.setattr(_spool_store, "CALL_SECONDS", -1.0)  # every operation overdue
    monkeypatch.setattr(_spool_store, "_PROGRESS_STEPS", 1)
    spool_given_up(spool, caplog, "OperationalError: interrupted")
