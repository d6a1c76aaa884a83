"""Hyper-parameter search with Optuna over any ``key=value`` field of :class:`gr_ft.config.FinetuneConfig`.

    gr-ft sweep --config recipes/configs/demo.yaml --space space.yaml --trials 20 --out sweeps/demo

A space file maps config keys to distributions::

    train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    adapter.r: {type: categorical, choices: [4, 8, 16]}
    adapter.method: {type: categorical, choices: [lora, dora]}
    train.epochs: {type: int, low: 2, high: 6}

Every key and every value the space can produce is validated with the config loader before the
first trial, and the data with the recipe's own reader. Each trial is a normal run folder
``OUT/trial_NNN`` (reload with ``gr_ft.load_run``); the objective is the best dev value of the
primary metric (:data:`gr_ft.evaluation.PRIMARY_METRIC`), and Optuna's MedianPruner stops trials
whose per-epoch dev score trails the median of earlier trials at the same epoch.

The study lives in an Optuna RDB storage: ``OUT/study.db`` (SQLite) by default, or ``--storage URL``
(e.g. ``postgresql://user@host/db``) for workers on many machines. Workers and restarts share it
(``load_if_exists``): a sweep killed and started again continues until ``--trials`` trials are
finished (complete or pruned). Each running trial writes a heartbeat; a trial whose worker died
(no heartbeat for the grace period) is marked failed and re-queued once with the same parameters
(Optuna's ``RetryHeartbeatStaleTrialCallback``), and the retry resumes that trial's run folder from
its last epoch checkpoint.

Example:
    >>> space = load_space("space.yaml")
    >>> result = run_sweep(SweepConfig(space="space.yaml", trials=3, out_dir="sweeps/demo"))
    >>> result["best"]["value"]
    0.71
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from .config import FinetuneConfig, config_to_dict, load_config, load_yaml_file
from .utils import atomic_write_text

__all__ = ["SearchParam", "SweepConfig", "load_space", "validate_space", "run_sweep", "sweep_main", "parse_seeds"]

logger = logging.getLogger(__name__)

PARAM_TYPES = ("float", "int", "categorical")
FINISHED_STATES = ("COMPLETE", "PRUNED")
MAX_RETRIES = 2
"""A trial whose worker died is re-queued at most this many times."""


@dataclass
class SearchParam:
    """One dimension of the search: a config key and its distribution."""

    key: str
    """Dotted config key, e.g. ``train.lr``."""
    type: str
    """float, int or categorical."""
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: list[Any] = field(default_factory=list)

    def __post_init__(self):
        where = f"search space key {self.key!r}"
        if self.type not in PARAM_TYPES:
            raise ValueError(f"{where}: type must be one of {list(PARAM_TYPES)}, got {self.type!r}")
        if self.type == "categorical":
            if not self.choices:
                raise ValueError(f"{where}: a categorical parameter needs a non-empty 'choices' list")
            bad = [c for c in self.choices if not isinstance(c, (str, int, float, bool, type(None)))]
            if bad:
                raise ValueError(f"{where}: choices must be scalars (strings, numbers, booleans, null); got {bad}")
            return
        if self.low is None or self.high is None:
            raise ValueError(f"{where}: a {self.type} parameter needs 'low' and 'high'")
        if not self.low < self.high:
            raise ValueError(f"{where}: low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"{where}: log: true needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError(f"{where}: log and step cannot be combined")

    def probe_values(self) -> list[Any]:
        """Values that exercise the config's validation: the bounds, or every choice."""
        return list(self.choices) if self.type == "categorical" else [self.cast(self.low), self.cast(self.high)]

    def cast(self, value: float) -> Any:
        return int(value) if self.type == "int" else float(value)

    def suggest(self, trial) -> Any:
        """Draw this parameter's value for an Optuna trial."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, self.choices)
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)


def _number(where: str, value: Any) -> Optional[float]:
    if value is None:
        return None
    try:
        return float(value)  # "1e-4" is a string to YAML 1.1
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a number, got {value!r}") from None


def load_space(path: str | Path) -> list[SearchParam]:
    """Read a search-space YAML (``key: {type: ..., ...}``); errors name the file and key.

    Example:
        >>> [p.key for p in load_space("space.yaml")]
        ['train.lr', 'adapter.r']
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"search space file {path} does not exist")
    raw = load_yaml_file(path) or {}
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: a search space is a mapping of config keys to distributions, e.g. "
                         f"'train.lr: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}'")
    params = []
    for key, spec in raw.items():
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: {key!r} must map to {{type: ..., ...}}, got {spec!r}")
        unknown = sorted(set(spec) - {"type", "low", "high", "log", "step", "choices"})
        if unknown:
            raise ValueError(f"{path}: {key!r} has unknown field(s) {unknown}; use type, low, high, log, step, choices")
        try:
            params.append(SearchParam(
                key=str(key), type=str(spec.get("type", "")), low=_number(f"{key}.low", spec.get("low")),
                high=_number(f"{key}.high", spec.get("high")), log=bool(spec.get("log", False)),
                step=_number(f"{key}.step", spec.get("step")), choices=list(spec.get("choices") or [])))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    return params


def as_override(key: str, value: Any) -> str:
    """``key=value`` in the form the config loader parses back to ``value`` (JSON is valid YAML)."""
    return f"{key}={json.dumps(value)}"


def validate_space(space: Sequence[SearchParam], config: Optional[str], overrides: Sequence[str]) -> FinetuneConfig:
    """Build the base config and one config per probe value of every parameter; returns the base config.

    Unknown keys and values the config rejects raise ValueError naming the key.
    """
    base = load_config(FinetuneConfig, config, list(overrides))
    for param in space:
        for value in param.probe_values():
            try:
                load_config(FinetuneConfig, config, [*overrides, as_override(param.key, value)])
            except ValueError as err:
                raise ValueError(f"search space key {param.key!r} (value {value!r}): {err}") from None
    return base


# ---------------------------------------------------------------- the study


@dataclass
class SweepConfig:
    """One ``gr-ft sweep`` invocation."""

    space: str
    """Search-space YAML file."""
    trials: int = 20
    """Finished (complete or pruned) trials the study should reach, counted over all workers and restarts."""
    config: Optional[str] = None
    """Base fine-tuning config (YAML); empty: the built-in demo."""
    overrides: list[str] = field(default_factory=list)
    """``key=value`` overrides applied to every trial before the sampled values."""
    out_dir: str = "sweeps/sweep"
    storage: Optional[str] = None
    """Optuna storage URL; empty: ``sqlite:///OUT/study.db``."""
    study_name: str = "gr-ft-sweep"
    n_jobs: int = 1
    """Local worker processes (each runs trials one after another on the shared storage)."""
    prune: bool = True
    """Prune trials with Optuna's MedianPruner on per-epoch dev scores."""
    rerun_seeds: list[int] = field(default_factory=list)
    """Re-run the best config with these seeds; mean ± sd of the test metrics in ``OUT/best_seeds.json``."""
    heartbeat_s: int = 30
    """Seconds between heartbeats of a running trial; a trial silent for 4 heartbeats is failed and re-queued."""
    sampler_seed: Optional[int] = None
    """Seed of the TPE sampler; a worker joining a study with T trials uses seed + T (no replayed draws)."""

    def __post_init__(self):
        if self.trials < 1:
            raise ValueError(f"--trials must be >= 1, got {self.trials}")
        if self.n_jobs < 1:
            raise ValueError(f"--n-jobs must be >= 1, got {self.n_jobs}")
        if self.heartbeat_s < 1:
            raise ValueError(f"--heartbeat must be >= 1 second, got {self.heartbeat_s}")

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(Path(self.out_dir) / 'study.db').resolve()}"


def _storage(cfg: SweepConfig, attempts: int = 6):
    """Optuna's RDB storage; workers that start together on a fresh database race to create its schema
    (one gets an IntegrityError from alembic), so the loser waits and joins the schema the winner wrote."""
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return _open_storage(cfg)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1) + random.random())


def _open_storage(cfg: SweepConfig):
    import optuna

    kwargs: dict[str, Any] = {}
    if cfg.storage_url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}  # several workers write one file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat and retry are experimental
        return optuna.storages.RDBStorage(
            cfg.storage_url, heartbeat_interval=cfg.heartbeat_s, grace_period=4 * cfg.heartbeat_s,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRIES, inherit_intermediate_values=True),
            **kwargs,
        )


def _space_record(cfg: SweepConfig, space: Sequence[SearchParam]) -> dict[str, Any]:
    return {"config": cfg.config, "overrides": list(cfg.overrides), "space": [p.__dict__ for p in space]}


def open_study(cfg: SweepConfig, space: Sequence[SearchParam], direction: str):
    """Create the study or join the existing one; a study built from another space or config is refused."""
    import optuna

    pruner = optuna.pruners.MedianPruner(n_startup_trials=2) if cfg.prune else optuna.pruners.NopPruner()
    study = optuna.create_study(storage=_storage(cfg), study_name=cfg.study_name, load_if_exists=True,
                                direction="maximize" if direction == "max" else "minimize",
                                sampler=optuna.samplers.TPESampler(seed=cfg.sampler_seed), pruner=pruner)
    record = json.loads(json.dumps(_space_record(cfg, space)))
    found = study.user_attrs.get("gr_ft_sweep")
    if found is None:
        study.set_user_attr("gr_ft_sweep", record)
    elif found != record:
        raise ValueError(f"study {cfg.study_name!r} in {cfg.storage_url} was created from another config or space "
                         f"({found}); use the same --config/--space/overrides, or a new --study-name")
    if cfg.sampler_seed is not None and study.trials:
        # a restarted or second worker must not replay the first worker's draws: offset the seed by the trials so far
        study.sampler = optuna.samplers.TPESampler(seed=cfg.sampler_seed + len(study.trials))
    wanted = optuna.study.StudyDirection.MAXIMIZE if direction == "max" else optuna.study.StudyDirection.MINIMIZE
    if study.direction != wanted:
        raise ValueError(f"study {cfg.study_name!r} optimises in the other direction; use a new --study-name")
    return study


def _counts(study) -> dict[str, int]:
    from collections import Counter

    return dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))


def _trial_config(cfg: SweepConfig, params: dict[str, Any], output_dir: Path) -> FinetuneConfig:
    overrides = [*cfg.overrides, *(as_override(k, v) for k, v in params.items()), as_override("output_dir", str(output_dir))]
    return load_config(FinetuneConfig, cfg.config, overrides)


def _objective(cfg: SweepConfig, space: Sequence[SearchParam], primary: str, ran: list[int]):
    import optuna

    from .recipes.finetune_lora import finetune

    def objective(trial) -> float:
        params = {p.key: p.suggest(trial) for p in space}
        # a re-queued trial inherits its user attributes: it resumes the dead trial's run folder
        retried = "run_dir" in trial.user_attrs
        run_dir = trial.user_attrs.get("run_dir") or str(Path(cfg.out_dir) / f"trial_{trial.number:03d}")
        if not retried and Path(run_dir).exists():
            raise ValueError(f"{run_dir} already exists but trial {trial.number} of study {cfg.study_name!r} is new: "
                             f"it belongs to another study; use a new --out, or that study's --study-name/--storage")
        trial.set_user_attr("run_dir", run_dir)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        ran.append(trial.number)
        finished = Path(run_dir) / "metrics.json"
        if finished.exists():  # the dead worker finished training but never reported
            return float(json.loads(finished.read_text())[f"dev_{primary}"])
        trial_cfg = _trial_config(cfg, params, Path(run_dir))
        history: list[dict[str, Any]] = []

        def on_evaluation(epoch: int, dev: dict[str, float]) -> None:
            history.append({"epoch": epoch, **dev})
            trial.report(dev[primary], epoch)
            if trial.should_prune():
                _mark_pruned(Path(run_dir), epoch, history)
                raise optuna.TrialPruned(f"dev {primary} {dev[primary]:.4f} at epoch {epoch} is below the median")

        metrics = finetune(trial_cfg, on_evaluation=on_evaluation)
        value = metrics.get(f"dev_{primary}")
        if value is None or not math.isfinite(value):
            raise ValueError(f"trial {trial.number} ({run_dir}) has no dev {primary}; set train.eval_every_epochs "
                             f"<= train.epochs")
        return float(value)

    return objective


def _mark_pruned(run_dir: Path, epoch: int, history: list[dict[str, Any]]) -> None:
    """Drop a pruned trial's checkpoints; keep a ``pruned.json`` with its dev history."""
    import shutil

    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    atomic_write_text(run_dir / "pruned.json", json.dumps({"pruned_at_epoch": epoch, "dev_history": history}, indent=2))


def _work(cfg: SweepConfig, study, space: Sequence[SearchParam], primary: str) -> list[int]:
    """Run trials until the study holds ``cfg.trials`` finished ones; returns the trial numbers this worker ran.

    Trials other workers are running count as in progress; when they would complete the target, this
    worker waits, and takes over any that go stale (their worker died) once Optuna re-queues them.
    """
    import optuna

    ran: list[int] = []
    objective = _objective(cfg, space, primary, ran)
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # dead workers' trials -> FAIL -> re-queued as WAITING
        counts = _counts(study)
        finished = sum(counts.get(s, 0) for s in FINISHED_STATES)
        in_progress = counts.get("RUNNING", 0) + counts.get("WAITING", 0)
        if finished >= cfg.trials:
            return ran
        if finished + in_progress >= cfg.trials and not counts.get("WAITING"):
            time.sleep(min(cfg.heartbeat_s, 10))  # the last trials run elsewhere: wait for them, or for them to go stale
            continue
        study.optimize(objective, n_trials=1)


def _spawn_workers(argv: Sequence[str], extra: int) -> list[subprocess.Popen]:
    """``extra`` more local worker processes on the same storage (``argv`` without --n-jobs and --rerun-seeds)."""
    command = [sys.executable, "-m", "gr_ft.cli", "sweep", *argv, "--n-jobs", "1", "--worker"]
    return [subprocess.Popen(command) for _ in range(extra)]


def _best_yaml(cfg: SweepConfig, study, primary: str) -> Path:
    best = study.best_trial
    best_cfg = _trial_config(cfg, best.params, Path(cfg.out_dir) / "best")
    counts = _counts(study)
    header = (f"# best of {sum(counts.get(s, 0) for s in FINISHED_STATES)} finished trials of study {cfg.study_name!r}:"
              f" trial {best.number} ({best.user_attrs.get('run_dir')}), dev {primary} {best.value:.4f}\n"
              f"#   gr-ft finetune --config {Path(cfg.out_dir) / 'best.yaml'}\n"
              f"# sampled: {', '.join(as_override(k, v) for k, v in best.params.items())}\n")
    path = Path(cfg.out_dir) / "best.yaml"
    atomic_write_text(path, header + yaml.safe_dump(config_to_dict(best_cfg), sort_keys=False))
    return path


def _trial_rows(study) -> list[dict[str, Any]]:
    return [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             "run_dir": t.user_attrs.get("run_dir"), "worker": t.user_attrs.get("worker"),
             "retry_of": t.system_attrs.get("failed_trial"),
             "seconds": round(t.duration.total_seconds(), 1) if t.duration else None}
            for t in study.get_trials(deepcopy=False)]


def _problem_primary(base: FinetuneConfig) -> tuple[str, str]:
    """(primary metric, direction) of the base config's task; reading the data validates it before any trial."""
    from .evaluation import PRIMARY_METRIC, metric_direction
    from .recipes.finetune_lora import prepare_data

    _, spec, _ = prepare_data(base)
    primary = PRIMARY_METRIC[spec.problem_type]
    return primary, metric_direction(primary)


def run_sweep(cfg: SweepConfig, argv: Sequence[str] = (), worker: bool = False) -> dict[str, Any]:
    """Validate, open (or join) the study, run trials, write ``best.yaml`` and ``sweep.json``; returns the summary.

    ``argv`` is the command line, used to start ``cfg.n_jobs - 1`` more local worker processes.
    """
    space = load_space(cfg.space)
    base = validate_space(space, cfg.config, cfg.overrides)
    primary, direction = _problem_primary(base)
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    study = open_study(cfg, space, direction)
    children = _spawn_workers(argv, cfg.n_jobs - 1) if cfg.n_jobs > 1 else []
    ran = _work(cfg, study, space, primary)
    codes = [child.wait() for child in children]
    if any(codes):
        raise RuntimeError(f"{sum(1 for c in codes if c)} local worker process(es) failed "
                           f"(exit codes {codes}); see their output above")
    summary = {"study": cfg.study_name, "storage": cfg.storage_url, "primary_metric": primary, "direction": direction,
               "requested_trials": cfg.trials, "states": _counts(study), "this_worker_ran": ran,
               "trials": _trial_rows(study)}
    if worker:
        return summary
    best = study.best_trial
    summary["best"] = {"number": best.number, "value": best.value, "params": best.params,
                       "run_dir": best.user_attrs.get("run_dir"), "config": str(_best_yaml(cfg, study, primary))}
    atomic_write_text(Path(cfg.out_dir) / "sweep.json", json.dumps(summary, indent=2, default=str) + "\n")
    if cfg.rerun_seeds:
        from .seeds import run_seeds

        best_cfg = load_config(FinetuneConfig, summary["best"]["config"], [f"output_dir={Path(cfg.out_dir) / 'best'}"])
        seeds_summary = run_seeds(best_cfg, cfg.rerun_seeds)
        atomic_write_text(Path(cfg.out_dir) / "best_seeds.json", json.dumps(seeds_summary, indent=2) + "\n")
        summary["best_seeds"] = seeds_summary["test"]
    return summary


# ---------------------------------------------------------------- command line


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; errors name the flag.

    Example:
        >>> parse_seeds("0, 1,2")
        [0, 1, 2]
    """
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"seeds must be comma-separated whole numbers like 0,1,2; got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one; got {text!r}")
    return seeds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gr-ft sweep", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Optuna search over fine-tuning config fields; each trial is a run folder OUT/trial_NNN, "
                    "the best config goes to OUT/best.yaml. Restarting the same command continues the study.",
        epilog="space file (YAML):\n  train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
               "  adapter.r: {type: categorical, choices: [4, 8, 16]}\n\nexamples:\n"
               "  gr-ft sweep --config recipes/configs/demo.yaml --space space.yaml --trials 20 --out sweeps/demo\n"
               "  gr-ft sweep --space space.yaml --trials 20 --out sweeps/demo --n-jobs 2 --rerun-seeds 0,1,2\n"
               "  # many machines, one study:\n"
               "  gr-ft sweep --config C.yaml --space S.yaml --trials 100 --storage postgresql://me@db/optuna "
               "--study-name prom --out /shared/sweeps/prom\n",
    )
    parser.add_argument("--config", help="base fine-tuning config (default: the built-in demo)")
    parser.add_argument("--space", required=True, help="search-space YAML")
    parser.add_argument("--trials", type=int, default=20, help="finished trials to reach (all workers together)")
    parser.add_argument("--out", default="sweeps/sweep", help="sweep folder: trial_NNN/, best.yaml, study.db")
    parser.add_argument("--storage", help="Optuna storage URL shared by workers (default sqlite:///OUT/study.db)")
    parser.add_argument("--study-name", default="gr-ft-sweep")
    parser.add_argument("--n-jobs", type=int, default=1, help="local worker processes")
    parser.add_argument("--no-prune", action="store_true", help="never prune (default: MedianPruner per epoch)")
    parser.add_argument("--rerun-seeds", help="re-run the best config with these seeds, e.g. 0,1,2")
    parser.add_argument("--heartbeat", type=int, default=30, help="seconds between trial heartbeats")
    parser.add_argument("--sampler-seed", type=int, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every trial, e.g. train.epochs=3")
    return parser


def sweep_main(argv: list[str]) -> int:
    """``gr-ft sweep``: returns the exit code."""
    args = _parser().parse_intermixed_args(argv)  # overrides before or after the flags
    cfg = SweepConfig(space=args.space, trials=args.trials, config=args.config, overrides=args.overrides,
                      out_dir=args.out, storage=args.storage, study_name=args.study_name, n_jobs=args.n_jobs,
                      prune=not args.no_prune, rerun_seeds=parse_seeds(args.rerun_seeds) if args.rerun_seeds else [],
                      heartbeat_s=args.heartbeat, sampler_seed=args.sampler_seed)
    worker_argv = [a for a in argv if a not in ("--worker",)]
    worker_argv = _without_flag(_without_flag(worker_argv, "--rerun-seeds"), "--n-jobs")
    summary = run_sweep(cfg, worker_argv, worker=args.worker)
    print(f"study {summary['study']}: {summary['states']} (requested {summary['requested_trials']} finished); "
          f"this worker ran trials {summary['this_worker_ran']}")
    if "best" in summary:
        best = summary["best"]
        print(f"best: trial {best['number']} dev {summary['primary_metric']} {best['value']:.4f} {best['params']}")
        print(f"wrote {best['config']} and {Path(cfg.out_dir) / 'sweep.json'}")
    if "best_seeds" in summary:
        print(f"best config over seeds {cfg.rerun_seeds}: " + ", ".join(
            f"{k} {v['mean']:.4f} ± {v['sd']:.4f}" for k, v in summary["best_seeds"].items()))
    return 0


def _without_flag(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag VALUE`` / ``flag=VALUE``."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item == flag:
            skip = True
            continue
        if item.startswith(flag + "="):
            continue
        out.append(item)
    return out
