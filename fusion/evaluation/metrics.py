"""Accuracy metrics, defined as the benchmarks' own scorers define them.

SSv2: top-1 / top-5. EPIC-KITCHENS-100 (epic-kitchens/C1-Action-Recognition, `utils/metrics.py`,
`utils/scoring.py`, `utils/actions.py`): verb and noun top-1 / top-5 from the ranked scores; an action is the
pair (verb, noun) with id `verb * 1000 + noun`, ranked by the product of the verb and noun softmaxes, so it is
right only when both are; top-1 on the segments of unseen participants (verb, noun, action) and on tail classes
(verb top-1 over segments whose verb is a tail verb, noun likewise, action over segments whose verb OR noun is
tail). Mean per-class accuracy besides.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

ACTION_MULTIPLIER = 1000  # the official action id: verb * 1000 + noun


def topk_correct(scores: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """scores: [N, C], target: [N] -> [N] bool: target among the k highest scores."""
    k = min(k, scores.shape[1])
    return (scores.topk(k, dim=1).indices == target.unsqueeze(1)).any(dim=1)


def mean_class_accuracy(scores: torch.Tensor, target: torch.Tensor) -> float:
    """Top-1 accuracy averaged over the classes present in `target`."""
    correct = (scores.argmax(dim=1) == target).double()
    classes = target.unique()
    return float(torch.stack([correct[target == c].mean() for c in classes]).mean()) if len(classes) else float("nan")


def classification_metrics(logits: torch.Tensor, label: torch.Tensor) -> dict[str, float]:
    return {
        "top1": float(topk_correct(logits, label, 1).double().mean()),
        "top5": float(topk_correct(logits, label, 5).double().mean()),
        "mean_class_accuracy": mean_class_accuracy(logits, label),
    }


def action_id(verb: torch.Tensor, noun: torch.Tensor) -> torch.Tensor:
    return verb * ACTION_MULTIPLIER + noun


def top_actions(verb_logits: torch.Tensor, noun_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, V], [N, M] -> ids [N, k] (verb * 1000 + noun) of the k best actions, best first, and their log-scores.

    Ranked by log P(verb) + log P(noun): the official product of softmaxes, without its underflow for confident
    models. The k best pairs lie among the k best verbs times the k best nouns, so [N, V * M] is never built."""
    k = min(k, verb_logits.shape[1] * noun_logits.shape[1])
    lv, iv = verb_logits.float().log_softmax(-1).topk(min(k, verb_logits.shape[1]), dim=1)
    ln, i_n = noun_logits.float().log_softmax(-1).topk(min(k, noun_logits.shape[1]), dim=1)
    ids = action_id(iv.unsqueeze(2), i_n.unsqueeze(1)).flatten(1)
    scores, best = (lv.unsqueeze(2) + ln.unsqueeze(1)).flatten(1).topk(k, dim=1)
    return ids.gather(1, best), scores


def verb_noun_metrics(
    verb_logits: torch.Tensor, noun_logits: torch.Tensor, verb: torch.Tensor, noun: torch.Tensor
) -> dict[str, float]:
    out: dict[str, float] = {}
    for task, scores, target in (("verb", verb_logits, verb), ("noun", noun_logits, noun)):
        for key, value in classification_metrics(scores, target).items():
            out[f"{task}_{key}"] = value
    ranked = top_actions(verb_logits, noun_logits, 5)[0]
    hits = ranked == action_id(verb, noun).unsqueeze(1)
    for k in (1, 5):
        out[f"action_top{k}"] = float(hits[:, :k].any(dim=1).double().mean())
    return out


def metrics_for(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
    """Metrics by the task the outputs answer: {"logits"} or {"verb", "noun"}."""
    if "logits" in outputs:
        return classification_metrics(outputs["logits"], targets["label"])
    return verb_noun_metrics(outputs["verb"], outputs["noun"], targets["verb"], targets["noun"])


def epic_breakdowns(
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    participants: np.ndarray | None,
    lists: dict[str, Any],
) -> tuple[dict[str, float], list[str]]:
    """Unseen-participant and tail-class top-1 (verb, noun, action), where the cache has what they need; else
    the keys are absent and a note says why."""
    metrics: dict[str, float] = {}
    notes: list[str] = []
    verb, noun = targets["verb"], targets["noun"]
    correct = {
        "verb": topk_correct(outputs["verb"], verb, 1),
        "noun": topk_correct(outputs["noun"], noun, 1),
        "action": top_actions(outputs["verb"], outputs["noun"], 1)[0][:, 0] == action_id(verb, noun),
    }
    if participants is None or "unseen_participants" not in lists:
        notes.append(
            "unseen-participant top-1 unavailable: the cache lacks participant ids or the official list "
            "(EPIC_100_unseen_participant_ids_<split>.csv); re-extract with it in the annotations folder"
        )
    else:
        unseen = torch.from_numpy(np.isin(participants, lists["unseen_participants"]))
        if unseen.any():
            metrics.update({f"unseen_{task}_top1": float(hit[unseen].double().mean()) for task, hit in correct.items()})
        else:
            notes.append("unseen-participant top-1 unavailable: no segment of an unseen participant was evaluated")
    if "tail_verbs" not in lists or "tail_nouns" not in lists:
        notes.append(
            "tail-class top-1 unavailable: the cache lacks the official lists (EPIC_100_tail_verbs.csv, "
            "EPIC_100_tail_nouns.csv); re-extract with them in the annotations folder"
        )
        return metrics, notes
    tail_verb = torch.from_numpy(np.isin(verb.numpy(), lists["tail_verbs"]))
    tail_noun = torch.from_numpy(np.isin(noun.numpy(), lists["tail_nouns"]))
    for task, mask in (("verb", tail_verb), ("noun", tail_noun), ("action", tail_verb | tail_noun)):
        if mask.any():
            metrics[f"tail_{task}_top1"] = float(correct[task][mask].double().mean())
        else:
            notes.append(f"tail {task} top-1 unavailable: no evaluated segment has a tail {task}")
    return metrics, notes


def headline(metrics: dict[str, float]) -> tuple[str, float]:
    """The metric that picks the best checkpoint: top-1, or action top-1 for verb/noun tasks."""
    return ("action_top1", metrics["action_top1"]) if "action_top1" in metrics else ("top1", metrics["top1"])
