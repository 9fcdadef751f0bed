"""docs/operating.md names every reason label the metrics export (so it stays true)."""

from __future__ import annotations

from pathlib import Path

from bucket_logging._sender.ledger import DROP_REASONS, REFUSAL_REASONS

OPERATING = Path(__file__).resolve().parents[2] / "docs" / "operating.md"


def test_the_operating_page_names_every_drop_and_refusal_reason() -> None:
    text = OPERATING.read_text()
    missing = [r for r in ("rejected", *DROP_REASONS, *REFUSAL_REASONS) if f"`{r}`" not in text]
    assert missing == []
