import torch

from fusion.evaluation.metrics import classification_metrics, top_actions, verb_noun_metrics
from fusion.models.heads import action_scores


def test_topk_and_mean_class_accuracy():
    logits = torch.tensor([[3.0, 1, 0, 0, 0, 0], [0, 3.0, 2, 0, 0, 0], [1, 0, 3.0, 0, 0, 0], [0, 0, 1, 3.0, 0, 0]])
    label = torch.tensor([0, 2, 2, 2])
    m = classification_metrics(logits, label)
    assert m["top1"] == 0.5  # rows 0 and 2
    assert m["top5"] == 1.0
    assert abs(m["mean_class_accuracy"] - (1.0 + 1 / 3) / 2) < 1e-6


def test_action_top1_is_the_rate_of_both_correct():
    g = torch.Generator().manual_seed(0)
    verb_logits, noun_logits = torch.randn(500, 7, generator=g), torch.randn(500, 11, generator=g)
    verb, noun = torch.randint(0, 7, (500,), generator=g), torch.randint(0, 11, (500,), generator=g)
    verb_logits[torch.arange(250), verb[:250]] += 3  # make half the verbs right
    noun_logits[torch.arange(100, 400), noun[100:400]] += 3
    m = verb_noun_metrics(verb_logits, noun_logits, verb, noun)
    both = ((verb_logits.argmax(1) == verb) & (noun_logits.argmax(1) == noun)).double().mean()
    assert abs(m["action_top1"] - float(both)) < 1e-9
    assert m["action_top1"] <= min(m["verb_top1"], m["noun_top1"]) and m["action_top5"] >= m["action_top1"]


def test_top_actions_match_the_full_outer_product_with_official_ids():
    g = torch.Generator().manual_seed(1)
    verb_logits, noun_logits = torch.randn(50, 6, generator=g), torch.randn(50, 9, generator=g)
    full = action_scores(verb_logits, noun_logits).topk(5, dim=1).indices  # index verb * 9 + noun
    ids, _ = top_actions(verb_logits, noun_logits, 5)
    assert torch.equal(ids, (full // 9) * 1000 + full % 9)


def test_confident_models_rank_actions_without_underflow():
    """Products of probabilities underflow to 0 for confident models and every action ties; log-sums do not."""
    verb_logits = torch.tensor([[0.0, -200.0, -400.0]])
    noun_logits = torch.tensor([[-300.0, 0.0, -150.0, -500.0]])
    assert (action_scores(verb_logits, noun_logits)[0, 4:] == 0).all()  # the product cannot rank these
    ids, scores = top_actions(verb_logits, noun_logits, 5)
    assert ids[0].tolist() == [1, 2, 1001, 0, 1002] and torch.isfinite(scores).all()
