"""Accuracy metrics: SSv2 top-1/top-5; EPIC-KITCHENS-100 verb, noun and action top-1/top-5, where an action
is correct only when verb and noun both are and action scores are the outer product of the verb and noun
softmaxes (as the official scorer); mean per-class accuracy."""

from __future__ import annotations

import torch


def topk_correct(scores: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """scores: [N, C], target: [N] -> [N] bool: target among the k highest scores."""
    k = min(k, scores.shape[1])
    return (scores.topk(k, dim=1).indices == target.unsqueeze(1)).any(dim=1)


def mean_class_accuracy(scores: torch.Tensor, target: torch.Tensor) -> float:
    """Top-1 accuracy averaged over the classes present in `target`."""
    correct = (scores.argmax(dim=1) == target).float()
    classes = target.unique()
    return float(torch.stack([correct[target == c].mean() for c in classes]).mean()) if len(classes) else float("nan")


def classification_metrics(logits: torch.Tensor, label: torch.Tensor) -> dict[str, float]:
    return {
        "top1": float(topk_correct(logits, label, 1).float().mean()),
        "top5": float(topk_correct(logits, label, 5).float().mean()),
        "mean_class_accuracy": mean_class_accuracy(logits, label),
    }


def verb_noun_metrics(
    verb_logits: torch.Tensor, noun_logits: torch.Tensor, verb: torch.Tensor, noun: torch.Tensor
) -> dict[str, float]:
    out: dict[str, float] = {}
    for task, scores, target in (("verb", verb_logits, verb), ("noun", noun_logits, noun)):
        for key, value in classification_metrics(scores, target).items():
            out[f"{task}_{key}"] = value
    action = verb * noun_logits.shape[1] + noun
    for k in (1, 5):
        out[f"action_top{k}"] = float(
            (top_actions(verb_logits, noun_logits, k) == action.unsqueeze(1)).any(dim=1).float().mean()
        )
    return out


def top_actions(verb_logits: torch.Tensor, noun_logits: torch.Tensor, k: int) -> torch.Tensor:
    """[N, V], [N, M] -> [N, k] ids (verb * M + noun) of the k best outer-product scores, best first.

    The k best products lie among the k best verbs times the k best nouns, so the [N, V * M] matrix is never built.
    """
    k = min(k, verb_logits.shape[1] * noun_logits.shape[1])
    pv, iv = verb_logits.float().softmax(-1).topk(min(k, verb_logits.shape[1]), dim=1)
    pn, i_n = noun_logits.float().softmax(-1).topk(min(k, noun_logits.shape[1]), dim=1)
    ids = (iv.unsqueeze(2) * noun_logits.shape[1] + i_n.unsqueeze(1)).flatten(1)
    best = (pv.unsqueeze(2) * pn.unsqueeze(1)).flatten(1).topk(k, dim=1).indices
    return ids.gather(1, best)


def metrics_for(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
    """Metrics by the task the outputs answer: {"logits"} or {"verb", "noun"}."""
    if "logits" in outputs:
        return classification_metrics(outputs["logits"], targets["label"])
    return verb_noun_metrics(outputs["verb"], outputs["noun"], targets["verb"], targets["noun"])


def headline(metrics: dict[str, float]) -> tuple[str, float]:
    """The metric that picks the best checkpoint: top-1, or action top-1 for verb/noun tasks."""
    return ("action_top1", metrics["action_top1"]) if "action_top1" in metrics else ("top1", metrics["top1"])
