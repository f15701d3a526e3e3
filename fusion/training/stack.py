"""Runs of one architecture stepped as one model: K members' weights stacked (fusion/models/stacking.py), their
batches laid end to end, one forward and backward for all, one AdamW update over the stacked weights.

Each member keeps its own learning rate (its own schedule), weight decay, gradient clipping, label smoothing,
augmentation and dropout draws (from its own random state, in the order it draws them alone): a stacked member
takes the steps its run takes alone, up to float rounding (tests/test_stacking.py states the tolerance). Its own
model and optimizer hold its state whenever it validates or writes a checkpoint (`sync`), so each ends as the
ordinary run folder it would write alone, resumable alone or stacked.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
import warnings
from typing import Any

import torch

from fusion.evaluation.evaluate import Outputs, members_outputs_over
from fusion.layers.keyed_dropout import draw_key
from fusion.models.stacking import NotStackable, stack_models, unstack_into
from fusion.training.distributed import own_random_state
from fusion.training.objective import augment, mixed_loss
from fusion.training.trainer import Trainer
from pipeline.core.devices import autocast
from pipeline.core.progress import log as progress


def _stack_key(t: Trainer) -> tuple[Any, ...] | None:
    """Runs with equal keys can stack (the model config but for its dropout rates, which stack per member);
    None: this run steps alone (several processes, or fp16 loss scaling, which a stacked step does not do)."""
    if t.dist.enabled or t.scaler.is_enabled():
        return None
    model = dataclasses.replace(t.cfg.model, dropout=0.0)
    return t.model_name, repr(model), t.precision, str(t.device)


class Stack:
    def __init__(self, trainers: list[Trainer]):
        """Raises NotStackable when the members' models have no stacked form."""
        self.trainers = trainers
        self.model = stack_models([t.model for t in trainers], self.draw)
        # each member's host random state as a generator object while its dropout keys are drawn
        self.generators = [torch.Generator() for _ in trainers]
        self.names = [name for name, _ in self.model.named_parameters()]
        self.params = [p for _, p in self.model.named_parameters()]
        first = trainers[0].optimizer.param_groups[0]
        self.betas, self.eps = first["betas"], first["eps"]
        self.moments: list[tuple[torch.Tensor, torch.Tensor]] = []
        for name, p in zip(self.names, self.params):  # a resumed member's AdamW moments, zeros for a new one
            states = [t.optimizer.state.get(t.model.get_parameter(name), {}) for t in trainers]
            self.moments.append(tuple(torch.stack([s[m] if s else torch.zeros_like(p[0]) for s in states])
                                      for m in ("exp_avg", "exp_avg_sq")))  # fmt: skip
        # the members of a group stand at one step, so each has taken that many optimizer steps
        self.steps = [int(t.optimizer.state[t.model.get_parameter(self.names[0])]["step"])
                      if t.optimizer.state else 0 for t in trainers]  # fmt: skip

    def draw(self, p: list[float]) -> list[int | None]:
        """fusion.layers.stacked.Draw from each member's own generator."""
        return [draw_key(g) if q else None for q, g in zip(p, self.generators)]

    def step(
        self, batch: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]
    ) -> dict[int, tuple[torch.Tensor, float]]:
        """One step of every member on the batch: {id(trainer): (its weighted loss, 0-d on the device; its
        share of the step's seconds)}, for Trainer.record."""
        started = time.perf_counter()
        first, k = self.trainers[0], len(self.trainers)
        members = []
        for t in self.trainers:  # augmentation draws from each member's global random state
            targets = {f: batch[f].to(t.device, non_blocking=True) for f in t.train_data.spec.label_fields}
            with own_random_state(t):
                members.append(augment(inputs, targets, t.cfg.data))
        stacked = {name: torch.cat([x[name] for x, _ in members]) for name in inputs}
        for g, t in zip(self.generators, self.trainers):  # where augmentation left each state
            g.set_state(t.rng["torch"])
        with autocast(first.device, first.precision):
            outputs = self.model(stacked)
            chunks = {name: out.chunk(k) for name, out in outputs.items()}
            losses = [mixed_loss({name: c[i] for name, c in chunks.items()}, parts, t.criterion)
                      for i, ((_, parts), t) in enumerate(zip(members, self.trainers))]  # fmt: skip
        for g, t in zip(self.generators, self.trainers):
            t.rng = {**t.rng, "torch": g.get_state()}
        for p in self.params:
            p.grad = None
        (sum(losses) * batch["share"]).backward()
        self._clip()
        self._adamw()
        with warnings.catch_warnings():  # the stack, not the members' optimizers, takes their steps
            warnings.filterwarnings("ignore", re.escape("Detected call of `lr_scheduler.step()` before"))
            for t in self.trainers:
                t.scheduler.step()
        seconds = (time.perf_counter() - started) / k
        return {id(t): (loss.detach().float() * batch["share"], seconds) for t, loss in zip(self.trainers, losses)}

    def _per_member(self, values: list[float]) -> torch.Tensor:
        """[K] Python numbers -> [K, 1], broadcasting over a weight's member-major view [K, -1]."""
        first = self.params[0]
        return torch.tensor(values, dtype=first.dtype, device=first.device).view(-1, 1)

    def _clip(self) -> None:
        """Each member's gradients clipped to its grad_clip by their norm over its own weights (as alone)."""
        limits = [t.cfg.optim.grad_clip for t in self.trainers]
        if not any(limits):
            return
        grads = [p.grad.view(len(limits), -1) for p in self.params]
        norms = torch.stack([g.float().norm(dim=1) for g in grads], dim=1).norm(dim=1)
        limit = torch.tensor(limits, device=norms.device)
        factor = torch.where(limit > 0, (limit / (norms + 1e-6)).clamp(max=1.0), torch.ones_like(norms))
        torch._foreach_mul_(grads, [factor.view(-1, 1).to(grads[0].dtype)] * len(grads))

    @torch.no_grad()
    def _adamw(self) -> None:
        """torch.optim.AdamW's update (single-tensor form) with each member's learning rate and weight decay, over
        every stacked weight at once (member-major views [K, -1], the members' numbers broadcast as [K, 1])."""
        (beta1, beta2), groups = self.betas, [t.optimizer.param_groups[0] for t in self.trainers]
        self.steps = [s + 1 for s in self.steps]
        decay = self._per_member([1 - g["lr"] * g["weight_decay"] for g in groups])
        step_size = self._per_member([g["lr"] / (1 - beta1**s) for g, s in zip(groups, self.steps)])
        correction = self._per_member([math.sqrt(1 - beta2**s) for s in self.steps])
        k, n = len(groups), len(self.params)
        params = [p.view(k, -1) for p in self.params]
        grads = [p.grad.view(k, -1) for p in self.params]
        exp_avg = [m.view(k, -1) for m, _ in self.moments]
        exp_avg_sq = [m.view(k, -1) for _, m in self.moments]
        torch._foreach_mul_(params, [decay] * n)
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, [correction] * n)
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_div(exp_avg, denom)
        torch._foreach_mul_(update, [step_size] * n)
        torch._foreach_sub_(params, update)

    def validate(self) -> dict[int, tuple[dict[str, Outputs], float]]:
        """{id(trainer): (its outputs over its "validation" (and "selecting") clips, its share of the seconds)}
        from one forward of the stacked model a batch, for Trainer.end_epoch; {} when the members validate on
        different data objects."""
        started, first = time.perf_counter(), self.trainers[0]
        if any(t.val_data is not first.val_data or t.select_data is not first.select_data for t in self.trainers):
            return {}
        losses = [t.validation_loss for t in self.trainers]
        splits = {"validation": first.val_data}
        if first.select_data is not first.val_data:
            splits["selecting"] = first.select_data
        over = {name: members_outputs_over(self.model, data, first.cfg.data.batch_size, first.device,
                                           first.precision, losses) for name, data in splits.items()}  # fmt: skip
        seconds = (time.perf_counter() - started) / len(self.trainers)
        return {id(t): ({name: outputs[k] for name, outputs in over.items()}, seconds)
                for k, t in enumerate(self.trainers)}  # fmt: skip

    def sync(self) -> None:
        """Put each member's weights and AdamW state into its own model and optimizer (before it validates or
        writes a checkpoint)."""
        unstack_into(self.model, [t.model for t in self.trainers])
        for k, t in enumerate(self.trainers):
            for name, (exp_avg, exp_avg_sq) in zip(self.names, self.moments):
                t.optimizer.state[t.model.get_parameter(name)] = {
                    "step": torch.tensor(float(self.steps[k])),
                    "exp_avg": exp_avg[k].clone(),
                    "exp_avg_sq": exp_avg_sq[k].clone(),
                }


def stacks_of(trainers: list[Trainer]) -> list[Stack]:
    """The stacks a lockstep group's runs form: two or more runs of one architecture, shapes and precision."""
    groups: dict[tuple[Any, ...], list[Trainer]] = {}
    for t in trainers:
        key = _stack_key(t)
        if key is not None:
            groups.setdefault(key, []).append(t)
    stacks = []
    for key, members in groups.items():
        if len(members) < 2:
            continue
        try:
            stacks.append(Stack(members))
        except NotStackable as exc:
            progress.info("%d runs of %s step side by side, not stacked: %s", len(members), key[0], exc)
            continue
        progress.info("%d runs of %s step as one stacked model", len(members), key[0])
    return stacks
