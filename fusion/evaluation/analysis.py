"""`cli fuse-eval --analysis DIR`: where a model is right and wrong, class by class, with class names.

Single-label caches: `per_class.csv` (id, name, clips, top-1, top-5, most frequent wrong answer) and
`confusions.png`, the most confused (true -> predicted) pairs. Verb/noun caches: `per_verb.csv`, `per_noun.csv`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from fusion.evaluation.metrics import topk_correct
from pipeline.core import atomic


def per_class_rows(scores: torch.Tensor, target: torch.Tensor, names: list[str]) -> list[dict[str, object]]:
    """One row per class present in `target`, most frequent first."""
    predicted = scores.argmax(dim=1)
    top1, top5 = topk_correct(scores, target, 1), topk_correct(scores, target, 5)
    rows = []
    for c in target.unique().tolist():
        mask = target == c
        wrong = predicted[mask & ~top1]
        confused = int(wrong.mode().values) if len(wrong) else None
        rows.append({
            "class_id": c,
            "name": names[c] if c < len(names) else "",
            "clips": int(mask.sum()),
            "top1": round(float(top1[mask].float().mean()), 6),
            "top5": round(float(top5[mask].float().mean()), 6),
            "most_confused_with": "" if confused is None else confused,
            "most_confused_name": "" if confused is None or confused >= len(names) else names[confused],
        })  # fmt: skip
    return sorted(rows, key=lambda row: (-row["clips"], row["class_id"]))


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with atomic.atomic_open(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def confusion_plot(scores: torch.Tensor, target: torch.Tensor, names: list[str], path: Path, pairs: int = 20) -> Path:
    """Bar chart of the `pairs` most frequent (true -> predicted) mistakes, named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    predicted = scores.argmax(dim=1)
    wrong = predicted != target
    counts: dict[tuple[int, int], int] = {}
    for t, p in zip(target[wrong].tolist(), predicted[wrong].tolist()):
        counts[(t, p)] = counts.get((t, p), 0) + 1
    top = sorted(counts.items(), key=lambda item: -item[1])[:pairs]

    def name(c: int) -> str:
        text = names[c] if c < len(names) and names[c] else f"class {c}"
        return text if len(text) <= 45 else text[:42] + "..."

    fig, ax = plt.subplots(figsize=(11, 0.4 * max(len(top), 1) + 1.5))
    labels = [f"{name(t)}  ->  {name(p)}" for (t, p), _ in top]
    ax.barh(range(len(top)), [n for _, n in top], color="tab:red")
    ax.set_yticks(range(len(top)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(
        xlabel="clips", title=f"most confused classes (true -> predicted), {int(wrong.sum())} of {len(target)} wrong"
    )
    fig.tight_layout()
    with atomic.atomic_path(path) as staging:
        fig.savefig(staging, dpi=100)
    plt.close(fig)
    return path


def write_analysis(
    folder: Path,
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    label_names: dict[str, list[str]],
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    if "logits" in outputs:
        names = label_names.get("label") or []
        return [
            _write_csv(folder / "per_class.csv", per_class_rows(outputs["logits"], targets["label"], names)),
            confusion_plot(outputs["logits"], targets["label"], names, folder / "confusions.png"),
        ]
    return [
        _write_csv(
            folder / f"per_{task}.csv", per_class_rows(outputs[task], targets[task], label_names.get(task) or [])
        )
        for task in ("verb", "noun")
    ]
