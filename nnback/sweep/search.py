"""Optuna for what Optuna does: TPE sampling (``method: tpe``) and median pruning.

The study lives in memory and is rebuilt on every run from the journal (the trials
that ended, with their scores and per-epoch metrics), so the sweep folder stays the
one source of truth. Choices are handed to Optuna as their JSON text, so any YAML
value (a layer mapping, a list) can be a choice.
"""

from __future__ import annotations

import json

import numpy as np

from nnback.errors import ConfigError
from nnback.sweep.spec import Range, SweepSpec


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError('method tpe and prune need Optuna: pip install -e ".[search]"') from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class Study:
    """An Optuna study for one sweep.

    Args:
        spec: the sweep (direction, sampler seed, pruning).
        finished: ``(params, state, score, history)`` of every trial that ended, state
            ``completed``/``time_limit``/``pruned``; ``history`` is ``[(epoch, value)]``.
        known: trials the journal holds in all. The sampler's seed is the sweep seed for
            a new sweep, and a seed drawn from it and ``known`` when a sweep continues,
            so a continued sweep does not draw its first trials' parameters again.
    """

    def __init__(self, spec: SweepSpec, finished: list[tuple[dict, str, float | None, list]], known: int):
        optuna = self._optuna = require_optuna()
        self.spec = spec
        seed = spec.seed
        if known:
            seed = int(np.random.SeedSequence([spec.seed, known]).generate_state(1)[0])
        sampler = (optuna.samplers.TPESampler(seed=seed) if spec.method == "tpe"
                   else optuna.samplers.RandomSampler(seed=seed))  # draws nothing: grid/random plan
        pruner = (optuna.pruners.MedianPruner(n_startup_trials=spec.prune.min_trials,
                                              n_warmup_steps=spec.prune.after_epochs)
                  if spec.prune is not None else optuna.pruners.NopPruner())
        self.study = optuna.create_study(direction="maximize" if spec.maximise else "minimize",
                                         sampler=sampler, pruner=pruner)
        self.distributions = _distributions(spec) if spec.method == "tpe" else {}
        self._live: dict[str, object] = {}  # trial id -> optuna trial
        self._reported: dict[str, int] = {}  # trial id -> last epoch reported
        self._pending = None  # the trial asked last, until it starts
        state = optuna.trial.TrialState
        for params, end, score, history in finished:
            self.study.add_trial(optuna.trial.create_trial(
                params=self._encode(params), distributions=self.distributions,
                value=score if end != "pruned" else None,
                state=state.PRUNED if end == "pruned" else state.COMPLETE,
                intermediate_values=dict(history)))

    def ask(self) -> dict:
        """Parameters for a new trial, from the sampler; call ``start`` with its id."""
        self._pending = self.study.ask(self.distributions)
        return self._decode(self._pending.params)

    def start(self, trial_id: str, params: dict) -> None:
        """Track a trial that starts running: the one just asked, or one from the journal."""
        if trial_id in self._live:
            return
        pending = self._pending
        if pending is not None and self._decode(pending.params) == params:
            self._live[trial_id], self._pending = pending, None
            return
        if self.distributions:
            self.study.enqueue_trial(self._encode(params))
        self._live[trial_id] = self.study.ask(self.distributions)

    def should_prune(self, trial_id: str, history: list[tuple[int, float]]) -> bool:
        """Report the epochs not yet reported; True if the pruner would stop the trial."""
        trial = self._live.get(trial_id)
        if trial is None or self.spec.prune is None:
            return False
        last = self._reported.get(trial_id, 0)
        for epoch, value in history:
            if epoch > last:
                trial.report(value, epoch)
                self._reported[trial_id] = last = epoch
        return trial.should_prune()

    def end(self, trial_id: str, state: str | None, score: float | None) -> None:
        """Tell Optuna how a trial ended: ``completed``/``time_limit``/``pruned``, or None
        for a trial that stopped without ending (interrupted, failed)."""
        trial = self._live.pop(trial_id, None)
        self._reported.pop(trial_id, None)
        if trial is None:
            return
        states = self._optuna.trial.TrialState
        if state == "pruned":
            self.study.tell(trial, state=states.PRUNED)
        elif state is not None and score is not None:
            self.study.tell(trial, score)
        else:
            self.study.tell(trial, state=states.FAIL)

    def _encode(self, params: dict) -> dict:
        return {k: json.dumps(v) if isinstance(self.spec.parameters[k], list) else v
                for k, v in params.items() if k in self.distributions}

    def _decode(self, params: dict) -> dict:
        return {k: json.loads(params[k]) if isinstance(values, list) else params[k]
                for k, values in self.spec.parameters.items() if k in params}


def _distributions(spec: SweepSpec) -> dict:
    dist = require_optuna().distributions
    out = {}
    for key, values in spec.parameters.items():
        if isinstance(values, Range):
            low, high = values.bounds
            out[key] = (dist.IntDistribution(low, high) if values.kind == "int_uniform"
                        else dist.FloatDistribution(low, high, log=values.kind == "log_uniform"))
        else:
            out[key] = dist.CategoricalDistribution([json.dumps(v) for v in values])
    return out
