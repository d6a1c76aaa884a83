"""Few-shot adaptation to new tasks (e.g. cell types): Reptile and prototypical networks over LoRA adapters.

* :mod:`.tasks` - a collection of related tasks and the meta-train / meta-test split of them;
* :mod:`.episodes` - seeded N-way K-shot episodes and their tokenized batches;
* :mod:`.reptile` - first-order Reptile over the trainable (LoRA + head) parameters;
* :mod:`.protonet` - prototypical networks, trained episodically or used on a frozen backbone;
* :mod:`.config` - the typed configs of the meta-learning recipes (``recipes/meta_reptile.py``, ``meta_protonet.py``);
* :mod:`.recipe` - what the recipes share: task loading with meta-test tasks held out, checkpoints, ``meta.json``,
  and the steps around the method (samplers, model, best-validation bookkeeping, meta-test scores);
* :mod:`.adapt` - ``gr-ft adapt``: a run folder plus k labelled examples of a new task -> an adapted run folder.

Example:
    >>> tasks = load_task_collection("../shared/data/fewshot/gue_emp_yeast")
    >>> split = split_tasks(tasks, meta_test=["H3", "H4"])
    >>> sampler = EpisodeSampler(tasks.subset(split.meta_train), n_way=2, k_shot=8, query_per_class=8, seed=0)
    >>> support, query = encode_episode(sampler.sample(0), tasks, tokenizer, max_length=256)
    >>> protonet_loss(model, support, query, n_way=2)["loss"].backward()
"""

from .adapt import adapt_run
from .config import MetaConfig, MetaTrainConfig
from .episodes import Episode, EpisodeSampler, encode_episode, encode_labeled_sequences, split_batch
from .protonet import (
    DISTANCES,
    ProtoNetClassifier,
    ProtoNetConfig,
    compute_prototypes,
    embed_batch,
    margin_spread,
    protonet_loss,
    prototype_logits,
)
from .reptile import (
    INNER_OPTIMIZERS,
    ReptileConfig,
    adapt_and_evaluate,
    inner_loop,
    inner_optimizer_factory,
    meta_lr_schedule,
    reptile_meta_step,
    reptile_step,
    restore_trainable,
    snapshot_trainable,
    task_delta,
)
from .distributed import average_gradients, broadcast_trainable, sum_across_processes
from .recipe import MetaRecord, read_meta_record
from .tasks import TaskCollection, TaskSplit, load_task_collection, split_tasks

__all__ = [
    # tasks and episodes
    "TaskCollection", "TaskSplit", "load_task_collection", "split_tasks",
    "Episode", "EpisodeSampler", "encode_episode", "encode_labeled_sequences", "split_batch",
    # reptile
    "ReptileConfig", "INNER_OPTIMIZERS", "inner_optimizer_factory", "snapshot_trainable", "restore_trainable",
    "task_delta", "reptile_step", "inner_loop", "meta_lr_schedule", "reptile_meta_step", "adapt_and_evaluate",
    # prototypical networks
    "ProtoNetConfig", "DISTANCES", "compute_prototypes", "margin_spread", "prototype_logits", "embed_batch",
    "protonet_loss", "ProtoNetClassifier",
    # processes (accelerate)
    "sum_across_processes", "broadcast_trainable", "average_gradients",
    # recipes and adaptation
    "MetaConfig", "MetaTrainConfig", "MetaRecord", "read_meta_record", "adapt_run",
]
