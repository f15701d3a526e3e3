"""What `cli predict` shows and writes: a table of the top-5 with class names and probabilities, a summary
accuracy line where the truth is known, and the records as JSON lines or CSV."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline.core import atomic, strict_json


def top_entries(record: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(column, top-5 items) of a record: ("top5", ...) or the verb, noun and action lists."""
    return [(key, record[key]) for key in ("top5", "verb_top5", "noun_top5", "action_top5") if key in record]


def truth(record: dict[str, Any]) -> str:
    if "label_name" in record:
        return record["label_name"]
    return record.get("action_name", "")


def print_table(records: list[dict[str, Any]], console: Console) -> None:
    table = Table(title=f"predictions ({len(records)} clips)", show_lines=True)
    table.add_column("clip", overflow="fold", max_width=40)
    columns = [key for key, _ in top_entries(next((r for r in records if r["status"] == "ok"), {}))]
    for key in columns:
        table.add_column(key.replace("_top5", " top-5").replace("top5", "top-5"), overflow="fold")
    has_truth = any("correct" in r for r in records)
    if has_truth:
        table.add_column("truth", overflow="fold")
        table.add_column("right", justify="center")
    for record in records:
        if record["status"] != "ok":
            cells = [f"failed: {record['error']}"] + [""] * (len(columns) - 1)
            table.add_row(record["clip_id"], *cells, *(["", ""] if has_truth else []))
            continue
        cells = ["\n".join(f"{item['prob']:.3f} {item['name'] or item['id']}" for item in items)
                 for _, items in top_entries(record)]  # fmt: skip
        extra = [truth(record), "yes" if record.get("correct") else "no"] if "correct" in record else ["", ""]
        table.add_row(record["clip_id"], *cells, *(extra if has_truth else []))
    console.print(table)


def summary_line(records: list[dict[str, Any]]) -> str:
    ok = [r for r in records if r["status"] == "ok"]
    failed = len(records) - len(ok)
    judged = [r for r in ok if "correct" in r]
    line = f"{len(ok)} of {len(records)} clips predicted" + (f", {failed} failed" if failed else "")
    if judged:
        right = sum(r["correct"] for r in judged)
        what = "action top-1" if "action_top5" in judged[0] else "top-1"
        line += f"; {what} {right / len(judged):.4f} ({right} of {len(judged)} labelled clips)"
    return line


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in record.items() if not isinstance(v, list)}
    for key, items in top_entries(record):
        for rank, item in enumerate(items, start=1):
            for part, value in item.items():
                row[f"{key.removesuffix('5')}_{rank}_{part}"] = value
    return row


def write_records(records: list[dict[str, Any]], path: Path) -> Path:
    """JSON lines (.jsonl, .json) or CSV (.csv, one column per rank and field)."""
    if path.suffix.lower() == ".csv":
        rows = [_flat(r) for r in records]
        columns = list(dict.fromkeys(key for row in rows for key in row))
        with atomic.atomic_open(path, newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    else:
        atomic.write_text(path, "".join(strict_json.dumps(r) + "\n" for r in records))
    return path
