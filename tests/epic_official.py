"""A small port of the official EPIC-KITCHENS-100 action-recognition scorer, to test ours against.

Source: github.com/epic-kitchens/C1-Action-Recognition @ c90b6f9 (CC BY-NC 4.0): `utils/scoring.py`
(`top_scores`, `compute_action_scores`, `_scores_array_to_ranks`, `_scores_dict_to_ranks`), `utils/metrics.py`
(`topk_accuracy`, `compute_metrics`), `utils/actions.py` (`action_id_from_verb_noun`) and `evaluate.py` (the action
score dicts). Kept as written there, with pandas replaced by numpy masks and scipy's softmax by its definition.
"""

from __future__ import annotations

import numpy as np


def action_id_from_verb_noun(verb, noun):
    return verb * 1000 + noun


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def top_scores(scores, top_n=100):
    top_n_scores_idx = np.argsort(scores)[:, ::-1][:, :top_n]
    top_n_scores = scores[np.arange(0, len(scores)).reshape(-1, 1), top_n_scores_idx]
    return top_n_scores_idx, top_n_scores


def compute_action_scores(verb_scores, noun_scores, top_n=100):
    top_verbs, top_verb_scores = top_scores(verb_scores, top_n=top_n)
    top_nouns, top_noun_scores = top_scores(noun_scores, top_n=top_n)
    top_verb_probs = softmax(top_verb_scores)
    top_noun_probs = softmax(top_noun_scores)
    action_probs_matrix = top_verb_probs[:, :, np.newaxis] * top_noun_probs[:, np.newaxis, :]
    instance_count = action_probs_matrix.shape[0]
    action_ranks = action_probs_matrix.reshape(instance_count, -1).argsort(axis=-1)[:, ::-1]
    verb_ranks_idx, noun_ranks_idx = np.unravel_index(action_ranks[:, :top_n], shape=(action_probs_matrix.shape[1:]))
    segments = np.arange(0, instance_count).reshape(-1, 1)
    return (
        (top_verbs[segments, verb_ranks_idx], top_nouns[segments, noun_ranks_idx]),
        action_probs_matrix.reshape(instance_count, -1)[segments, action_ranks[:, :top_n]],
    )


def scores_to_ranks(scores):
    if isinstance(scores, np.ndarray):
        return scores.argsort(axis=-1)[:, ::-1]
    ranks = []
    for score in scores:
        class_ids = np.array(list(score.keys()))
        score_array = np.array([score[class_id] for class_id in class_ids])
        ranks.append(class_ids[np.argsort(score_array)[::-1]])
    return np.array(ranks)


def topk_accuracy(rankings, labels, ks=(1, 5)):
    maxk = np.max(ks)
    tp = rankings[:, :maxk] == labels.reshape(-1, 1)
    return [tp[:, :k].max(1).mean() for k in ks]


def evaluate(verb_output, noun_output, verb_class, noun_class, participant_id, tail_verbs, tail_nouns, unseen):
    """evaluate.py's `main` on arrays: {"all"|"tail"|"unseen": {"verb"|"noun"|"action": [top-1(, top-5)]}}."""
    (verbs, nouns), _scores = compute_action_scores(verb_output, noun_output, top_n=100)
    scores = {
        "verb": verb_output,
        "noun": noun_output,
        "action": [
            {action_id_from_verb_noun(v, n): s for v, n, s in zip(segment_verbs, segment_nouns, segment_score)}
            for segment_verbs, segment_nouns, segment_score in zip(verbs, nouns, _scores)
        ],
    }
    ranks = {key: scores_to_ranks(value) for key, value in scores.items()}
    labels = {"verb": verb_class, "noun": noun_class, "action": action_id_from_verb_noun(verb_class, noun_class)}
    accuracies = {"all": {task: topk_accuracy(ranks[task], labels[task], (1, 5)) for task in labels}}
    unseen_idx = np.isin(participant_id, unseen)
    if unseen_idx.sum():
        accuracies["unseen"] = {task: topk_accuracy(ranks[task][unseen_idx], labels[task][unseen_idx], (1,))
                                for task in labels}  # fmt: skip
    tail_verb_idx, tail_noun_idx = np.isin(verb_class, tail_verbs), np.isin(noun_class, tail_nouns)
    tail = {"verb": tail_verb_idx, "noun": tail_noun_idx, "action": tail_verb_idx | tail_noun_idx}
    accuracies["tail"] = {task: topk_accuracy(ranks[task][tail[task]], labels[task][tail[task]], (1,))
                          for task in labels}  # fmt: skip
    return accuracies
