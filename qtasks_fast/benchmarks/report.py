"""Writing results: number formatting, markdown and rich tables, per-suite files, optional plots."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        for k in row:
            if k not in cols and not k.startswith("_"):
                cols.append(k)
    return cols


def markdown_table(rows: Sequence[dict[str, Any]], cols: Sequence[str] | None = None) -> str:
    cols = list(cols or columns_of(rows))
    if not rows:
        return "_no rows_\n"
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c)).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def rich_table(title: str, rows: Sequence[dict[str, Any]], cols: Sequence[str] | None = None) -> Table:
    cols = list(cols or columns_of(rows))
    table = Table(title=title, title_justify="left")
    for c in cols:
        table.add_column(c, justify="left" if c in ("case", "target", "status", "metric", "note") else "right")
    for row in rows:
        cells = []
        for c in cols:
            text = fmt(row.get(c))
            if c == "status":
                text = {"PASS": "[green]PASS[/green]", "MISS": "[red]MISS[/red]"}.get(text, text)
            cells.append(text)
        table.add_row(*cells)
    return table


def write_suite(out: Path, suite: str, result: dict[str, Any], meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{suite}.json").write_text(json.dumps({"suite": suite, **result, "meta": meta}, indent=2, default=str))
    lines = [f"## {suite}\n"]
    if result.get("params"):
        lines.append("Parameters: " + ", ".join(f"{k}={fmt(v)}" for k, v in result["params"].items()) + "\n")
    lines.append(markdown_table(result.get("rows", [])))
    for note in result.get("notes", []):
        lines.append(f"- {note}")
    if result.get("plot"):
        lines.append(f"\n![{suite}]({Path(result['plot']).name})")
    (out / f"{suite}.md").write_text("\n".join(lines) + "\n")


def try_plot(path: Path, draw: Callable[[Any], None]) -> tuple[str | None, str | None]:
    """Draw with matplotlib when installed; return (png path, None) or (None, why not)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None, "plot skipped: matplotlib is not installed (pip install matplotlib)"
    fig, ax = plt.subplots(figsize=(7, 4))
    try:
        draw(ax)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return str(path), None
