"""What a training run reports: loss and validation curves for ``dvc plots``."""

from __future__ import annotations

import csv
from pathlib import Path


def curves_from_history(log_history: list[dict], metric_prefix: str) -> tuple[list[dict], list[dict]]:
    """Loss and validation curves from the Trainer's log history (restored with a resumed checkpoint)."""
    loss_rows, val_rows = [], []
    for entry in log_history:
        step, epoch = entry.get("step", 0), round(entry.get("epoch") or 0, 3)
        if "loss" in entry:
            loss_rows.append({"step": step, "epoch": epoch, "loss": entry["loss"]})
        values = {k.removeprefix(metric_prefix): v for k, v in entry.items() if k.startswith(metric_prefix)}
        if values:
            val_rows.append({"step": step, "epoch": epoch, **values})
    return loss_rows, val_rows


def write_curve(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(key for row in rows for key in row)) or ["step"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


