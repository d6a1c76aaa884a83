"""One config, several seeds: a run folder per seed and the mean ± sd of every test metric.

    gr-ft finetune --config recipes/configs/demo.yaml --seeds 0,1,2
    # -> runs/demo/seed_0, runs/demo/seed_1, runs/demo/seed_2, runs/demo/seeds_summary.json

Seeds already finished (their folder holds ``metrics.json``) are read, not re-run, so an interrupted
multi-seed job continues where it stopped. The model card shows the mean ± sd when the other seeds'
folders are passed to ``gr-ft push`` (``--seed-runs``); the summary prints that command.

Example:
    >>> summary = run_seeds(load_config(FinetuneConfig, None, ["train.epochs=1"]), [0, 1, 2])
    >>> summary["test"]["mcc"]["mean"], summary["test"]["mcc"]["sd"]
    (0.61, 0.03)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
from pathlib import Path
from typing import Any, Sequence

from .config import FinetuneConfig
from .utils import atomic_write_text

__all__ = ["run_seeds", "seed_config", "summarise_seeds"]

logger = logging.getLogger(__name__)
SUMMARY_FILE = "seeds_summary.json"


def seed_config(cfg: FinetuneConfig, seed: int) -> FinetuneConfig:
    """``cfg`` with ``train.seed=seed`` writing to ``output_dir/seed_<seed>``."""
    return dataclasses.replace(cfg, output_dir=str(Path(cfg.output_dir) / f"seed_{seed}"),
                               train=dataclasses.replace(cfg.train, seed=seed))


def summarise_seeds(runs: Sequence[tuple[int, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Mean, sample sd (0 for one seed) and values of each numeric test metric over ``(seed, metrics)`` pairs.

    Example:
        >>> summarise_seeds([(0, {"test": {"mcc": 0.5}}), (1, {"test": {"mcc": 0.7}})])["mcc"]["sd"]
        0.1414
    """
    names = [n for n, v in runs[0][1]["test"].items() if isinstance(v, (int, float))]
    out = {}
    for name in names:
        values = [float(m["test"][name]) for _, m in runs if isinstance(m["test"].get(name), (int, float))]
        out[name] = {"mean": round(statistics.mean(values), 4),
                     "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
                     "values": [round(v, 4) for v in values]}
    return out


def run_seeds(cfg: FinetuneConfig, seeds: Sequence[int], finetune=None) -> dict[str, Any]:
    """Fine-tune ``cfg`` once per seed (``output_dir/seed_N``); write and return ``output_dir/seeds_summary.json``."""
    if finetune is None:
        from .recipes.finetune_lora import finetune
    runs = []
    for seed in seeds:
        run_cfg = seed_config(cfg, seed)
        finished = Path(run_cfg.output_dir) / "metrics.json"
        if finished.exists() and not cfg.overwrite:
            logger.info("seed %d already finished in %s; reading its metrics", seed, run_cfg.output_dir)
            runs.append((seed, json.loads(finished.read_text())))
            continue
        runs.append((seed, finetune(run_cfg)))
    folders = [str(Path(cfg.output_dir) / f"seed_{seed}") for seed in seeds]
    primary = next((k for k in runs[0][1] if k.startswith("dev_")), None)
    summary = {
        "seeds": list(seeds), "runs": folders, "test": summarise_seeds(runs),
        "sd": "sample standard deviation over seeds (n-1); 0 for a single seed",
        "card": f"gr-ft push {folders[0]} REPO_ID" + (f" --seed-runs {' '.join(folders[1:])}" if len(folders) > 1 else ""),
    }
    if primary:
        values = [m[primary] for _, m in runs if m.get(primary) is not None]
        summary[primary] = {"mean": round(statistics.mean(values), 4),
                            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}
    atomic_write_text(Path(cfg.output_dir) / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    logger.info("seeds %s: %s", list(seeds), {k: f"{v['mean']} ± {v['sd']}" for k, v in summary["test"].items()})
    return summary
