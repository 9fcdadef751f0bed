"""Plain-text tables for the benchmark output."""

from __future__ import annotations

import sys


def print_table(title: str, header: list[str], rows: list[list[str]], note: str = "") -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    print(f"\n{title}")
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False))
    print(line)
    print("-" * len(line))
    for row in rows:
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=False))
        ]
        print("  ".join(cells))
    for part in note.splitlines():
        print(f"  ({part})" if part else "")
    sys.stdout.flush()
