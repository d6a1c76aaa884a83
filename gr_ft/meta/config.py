"""Typed configs of the meta-learning recipes: :class:`MetaConfig` (the ``meta:`` section) and the whole job.

A config file mirrors the dataclass tree and loads with :func:`gr_ft.config.load_config`, like
the fine-tuning config; any field can be overridden as ``meta.k_shot=16``::

    # recipes/configs/meta_reptile_yeast.yaml
    output_dir: runs/meta_reptile_yeast
    meta:
      tasks: ../shared/data/fewshot/gue_emp_yeast
      meta_test: [H3, H4, H3K4me3]
      method: reptile

Example:
    >>> cfg = load_config(MetaTrainConfig, None, ["meta.method=protonet", "meta.k_shot=4"])
    >>> cfg.meta.meta_lr, cfg.meta.protonet_config().k_shot     # meta_lr defaults per method
    (0.001, 4)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from ..config import ALPHABETS, AdapterConfig, DataConfig, FinetuneConfig, ModelConfig, RunConfig, TrainConfig
from .episodes import EpisodeShape
from .protonet import DISTANCES, ProtoNetConfig
from .reptile import INNER_OPTIMIZERS, ReptileConfig

__all__ = ["META_METHODS", "SYNTHETIC_TASKS", "MetaConfig", "MetaTrainConfig"]

META_METHODS = ("reptile", "protonet")
DEFAULT_META_LR = {"reptile": 1.0, "protonet": 1e-3}
SYNTHETIC_TASKS = ("synthetic:cell_type", "synthetic:cell_type_panel")
"""Task collections generated in memory (``gr_ft.synthetic``), one task per cell type: the four named cell types,
or a seeded panel of 20 cell types over a shared pool of 16 TF motifs (``cell_type_panel_sequences``)."""


@dataclass
class MetaConfig(EpisodeShape):
    """Which tasks to meta-train on, the episode shape, and the Reptile / ProtoNet optimisation (flags ``meta.*``)."""

    RENAMED: ClassVar[dict[str, str]] = {"query_size": "query_per_class", "eval_every": "eval_every_steps",
                                         "checkpoint_every": "checkpoint_every_steps"}
    """Old key names still accepted (with a warning): the per-class count and the units are now in the names."""

    tasks: str = "synthetic:cell_type"
    """A folder of task folders (each with train/dev/test files), one file or dataset folder whose `task_column`
    names each row's task, or synthetic:cell_type (four cell types generated in memory) or
    synthetic:cell_type_panel (20 cell types, each a combination of 2-3 TFs of a shared motif pool)."""
    task_column: Optional[str] = None
    """Column naming each row's task when `tasks` is one file or one dataset folder."""
    meta_test: Optional[list[str]] = None
    """Task names held out for meta-testing (never seen in meta-training); empty holds out a seeded
    `meta_test_fraction` of the tasks."""
    meta_test_fraction: float = 0.25
    """Fraction of tasks held out when `meta_test` is empty (seeded by train.seed); 0 holds out none, when the
    meta-test tasks come from another collection (benchmarks/fewshot_curves.py --meta-test-data)."""
    val_fraction: float = 0.2
    """Rows of each meta-train task kept for validation episodes when the tasks have no dev split
    (a single file with `task_column`); otherwise validation episodes come from the dev split."""
    synthetic_size: int = 2000
    """Rows per split of the synthetic task collections (spread evenly over their cell types)."""
    synthetic_length_bp: int = 200
    """Sequence length of synthetic:cell_type."""
    method: str = "reptile"
    """reptile (first-order, over LoRA + head) or protonet (prototypical networks on pooled embeddings)."""
    inner_steps: int = 5
    """Reptile: optimiser steps on one episode's support set per meta-step."""
    inner_lr: float = 1e-3
    """Reptile: learning rate of the inner optimiser."""
    inner_optimizer: str = "adam"
    """Reptile: adam (beta1 = 0) or sgd, a fresh one per task."""
    inner_batch_size: Optional[int] = None
    """Reptile: support examples per inner step; empty uses the whole support set."""
    meta_lr: Optional[float] = None
    """Reptile: outer step size in (0, 1] (default 1.0); ProtoNet: Adam learning rate (default 1e-3)."""
    final_meta_lr: float = 0.0
    """meta_lr is annealed linearly to this value at the last meta-step."""
    distance: str = "euclidean"
    """ProtoNet: euclidean (negative squared distance) or cosine."""
    temperature: Optional[float] = None
    """ProtoNet: logits are divided by this. Empty: calibrated once before meta-training so that the starting
    logit margins have unit spread (embeddings of a random or frozen backbone lie close together, and at 1.0
    every query would start at ~50:50 with a vanishing gradient); the value used is saved in meta.json."""
    learn_temperature: bool = True
    """ProtoNet: learn the temperature (in log space) with the adapter, starting from `temperature` (metric
    scaling, as in TADAM): the logit scale can then adjust without the embedding shrinking to do it."""
    eval_every_steps: int = 50
    """Meta-steps between validations (on dev-split episodes of the meta-train tasks); best weights are kept."""
    val_episodes: int = 16
    """Validation episodes (the same ones at every validation)."""
    eval_inner_steps: Optional[int] = None
    """Reptile: adaptation steps on a validation / meta-test episode (empty: 2 * inner_steps). Also the
    default of `gr-ft adapt --steps` for the run."""
    test_episodes: int = 8
    """Episodes per meta-test task scored once after meta-training (0: skip); recorded in metrics.json."""
    checkpoint_every_steps: int = 50
    """Meta-steps between checkpoints (also after every validation)."""

    def __post_init__(self):
        super().__post_init__()
        if self.method not in META_METHODS:
            raise ValueError(f"meta.method must be one of {list(META_METHODS)}, got {self.method!r}")
        if self.meta_lr is None:
            self.meta_lr = DEFAULT_META_LR[self.method]
        if self.tasks.startswith("synthetic:") and self.tasks not in SYNTHETIC_TASKS:
            raise ValueError(f"meta.tasks {self.tasks!r}: built-in task collections are {list(SYNTHETIC_TASKS)}")
        if self.meta_test is not None and not self.meta_test:
            self.meta_test = None
        if not 0 <= self.meta_test_fraction < 1:
            raise ValueError(f"meta.meta_test_fraction must be in [0, 1), got {self.meta_test_fraction}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"meta.val_fraction must be in (0, 1), got {self.val_fraction}")
        for flag in ("synthetic_size", "synthetic_length_bp", "eval_every_steps", "val_episodes",
                     "checkpoint_every_steps"):
            if getattr(self, flag) < 1:
                raise ValueError(f"meta.{flag} must be >= 1, got {getattr(self, flag)}")
        if self.test_episodes < 0:
            raise ValueError(f"meta.test_episodes must be >= 0, got {self.test_episodes}")
        if self.eval_inner_steps is not None and self.eval_inner_steps < 1:
            raise ValueError(f"meta.eval_inner_steps must be >= 1 or empty, got {self.eval_inner_steps}")
        if self.meta_lr <= 0:
            raise ValueError(f"meta.meta_lr must be > 0, got {self.meta_lr}")
        if self.inner_optimizer not in INNER_OPTIMIZERS:
            raise ValueError(f"meta.inner_optimizer must be one of {sorted(INNER_OPTIMIZERS)}, got "
                             f"{self.inner_optimizer!r}")
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(f"meta.temperature must be > 0 or empty (calibrated), got {self.temperature}")
        if self.distance not in DISTANCES:
            raise ValueError(f"meta.distance must be one of {sorted(DISTANCES)}, got {self.distance!r}")
        # the method's own config checks the rest (its errors name the meta.* flag)
        self.reptile_config() if self.method == "reptile" else self.protonet_config()

    @property
    def adapt_steps(self) -> int:
        """Adaptation steps on a new task's support set (validation, meta-test, `gr-ft adapt`)."""
        return self.eval_inner_steps or 2 * self.inner_steps

    def reptile_config(self) -> ReptileConfig:
        """The Reptile settings of this config."""
        return ReptileConfig(
            **self.episode_shape(), meta_lr=self.meta_lr, final_meta_lr=self.final_meta_lr,
            inner_steps=self.inner_steps, inner_lr=self.inner_lr, inner_optimizer=self.inner_optimizer,
            inner_batch_size=self.inner_batch_size,
        )

    def protonet_config(self) -> ProtoNetConfig:
        """The prototypical-network settings of this config (``lr`` is ``meta_lr``)."""
        if self.final_meta_lr > self.meta_lr:
            raise ValueError(f"meta.final_meta_lr must be <= meta.meta_lr={self.meta_lr}, got {self.final_meta_lr}")
        return ProtoNetConfig(**self.episode_shape(), lr=self.meta_lr, distance=self.distance,
                              temperature=self.temperature or 1.0)


META_TRAIN_KEYS = ("seed", "precision", "eval_batch_size", "max_grad_norm", "tracker")
"""The ``train.*`` fields meta-training reads; the others have meta.* counterparts (META_TRAIN_EQUIVALENTS)."""
META_TRAIN_EQUIVALENTS = {
    "lr": "meta.meta_lr (outer step) and meta.inner_lr (inner loop)",
    "epochs": "meta.meta_steps",
    "max_steps": "meta.meta_steps",
    "batch_size": "meta.meta_batch_tasks (tasks per meta-step), meta.k_shot and meta.inner_batch_size",
    "eval_every_epochs": "meta.eval_every_steps",
    "checkpoint_every_steps": "meta.checkpoint_every_steps",
    "log_every_steps": "meta.eval_every_steps",
}


def _check_meta_train_section(train: TrainConfig) -> None:
    """Refuse train.* values meta-training would ignore, naming the meta.* key that does the job."""
    defaults = TrainConfig()
    ignored = [name for name in vars(train) if name not in META_TRAIN_KEYS and getattr(train, name) != getattr(defaults, name)]
    if ignored:
        hints = "; ".join(f"train.{name} -> {META_TRAIN_EQUIVALENTS.get(name, 'no meta-training counterpart')}"
                          for name in ignored)
        raise ValueError(f"meta-training reads only train.{{{', '.join(META_TRAIN_KEYS)}}}; these would be ignored: "
                         f"{hints}")


def _synthetic_model() -> ModelConfig:
    # overlapping 4-mers: over a random backbone the pooled states keep the k-mer composition (6-mers or BPE lose it)
    return ModelConfig(tokenizer="kmer4", hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)


@dataclass
class MetaTrainConfig(RunConfig):
    """Everything one meta-training run needs. The defaults are the built-in synthetic cell-type job (Reptile)."""

    RENAMED: ClassVar[dict[str, str]] = {"lora": "adapter"}
    """The adapter section's old name."""

    output_dir: Optional[str] = None
    """Run folder: checkpoints while training, then the same files as a fine-tuning run plus meta.json.
    Empty: runs/meta_<method>."""
    alphabet: str = "dna"
    """dna or protein: how sequences are validated."""
    sequence_column: str = "sequence"
    label_column: str = "label"
    max_length: int = 256
    """Maximum tokens per sequence, special tokens included; longer sequences are cut (see `crop`)."""
    crop: str = "start"
    """Which part of an over-long sequence to keep: start, end, center or ends."""
    model: ModelConfig = field(default_factory=_synthetic_model)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    """Only seed, precision, eval_batch_size, max_grad_norm (ProtoNet) and tracker are used; any other train.* key
    is refused with the meta.* key that does its job."""
    meta: MetaConfig = field(default_factory=MetaConfig)

    def __post_init__(self):
        if not self.output_dir:
            self.output_dir = f"runs/meta_{self.meta.method}"
        if self.alphabet not in ALPHABETS or self.alphabet == "auto":
            raise ValueError(f"alphabet must be dna or protein, got {self.alphabet!r}")
        # DataConfig checks max_length and crop with the same flag names
        self.as_data_config()
        _check_meta_train_section(self.train)

    @property
    def problem_type(self) -> str:
        """binary for 2-way episodes, else multiclass."""
        return "binary" if self.meta.n_way == 2 else "multiclass"

    def as_data_config(self) -> DataConfig:
        """The data section a fine-tuning run of the same model would have (saved in the run's config.yaml)."""
        return DataConfig(path=self.meta.tasks, sequence_column=self.sequence_column,
                          label_column=self.label_column, problem_type=self.problem_type, alphabet=self.alphabet,
                          max_length=self.max_length, crop=self.crop)

    def as_finetune_config(self) -> FinetuneConfig:
        """The run folder's ``config.yaml``: what :func:`gr_ft.load_run` needs to rebuild and use the model.

        Example:
            >>> MetaTrainConfig().as_finetune_config().data.max_length
            256
        """
        return FinetuneConfig(output_dir=self.output_dir, overwrite=self.overwrite, resume=self.resume,
                              data=self.as_data_config(), model=self.model, adapter=self.adapter, train=self.train)
