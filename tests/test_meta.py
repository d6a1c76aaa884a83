"""Few-shot meta-learning: task collections, episodes, Reptile and prototypical networks (known answers)."""

from __future__ import annotations

import copy
import os

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from conftest import free_port, shared_data
from gr_ft.adapters import apply_adapter, trainable_parameter_count
from gr_ft.config import LoraConfig, ModelConfig
from gr_ft.meta import (
    EpisodeSampler,
    ProtoNetClassifier,
    ReptileConfig,
    adapt_and_evaluate,
    compute_prototypes,
    embed_batch,
    encode_episode,
    inner_loop,
    inner_optimizer_factory,
    load_task_collection,
    meta_lr_schedule,
    protonet_loss,
    prototype_logits,
    reptile_meta_step,
    reptile_step,
    restore_trainable,
    snapshot_trainable,
    split_batch,
    split_tasks,
)
from gr_ft.modeling import SequenceModel, build_backbone
from gr_ft.synthetic import CELL_TYPE_TFS, write_task
from gr_ft.tokenization import SequenceTokenizer

CELL_TYPES = sorted(CELL_TYPE_TFS)
TINY = ModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_position_embeddings=128,
                   dropout=0.0, head_dropout=0.0)
MAX_LENGTH = 48


def sgd(lr: float = 0.1):
    return lambda params: torch.optim.SGD(params, lr=lr)


@pytest.fixture(scope="module")
def tokenizer():
    return SequenceTokenizer.from_pretrained("kmer3")


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """Synthetic cell-type tasks, one folder each: 24 train rows per cell type, 12 per class."""
    return write_task("cell_type", tmp_path_factory.mktemp("cell_types"), n_train=96, n_dev=16, n_test=32,
                      seed=0, length_bp=60)


@pytest.fixture(scope="module")
def tasks(task_dir):
    return load_task_collection(task_dir)


def tiny_model(tokenizer, seed: int = 0) -> nn.Module:
    """A 1-layer BERT with a 2-class head, LoRA r=4 on query/key/value (head trainable via modules_to_save)."""
    torch.manual_seed(seed)
    model = SequenceModel(build_backbone(TINY, tokenizer), "multiclass", num_labels=2, head_dropout=0.0)
    return apply_adapter(model, LoraConfig(r=4, dropout=0.0))


def trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def frozen(model) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if not p.requires_grad}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


def changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    return [name for name in a if not torch.equal(a[name], b[name])]


# ---------------------------------------------------------------- tasks


def test_task_folders_load_as_tasks(tasks):
    assert tasks.names == CELL_TYPES
    for name in tasks:
        assert list(tasks[name].columns) == ["sequence", "label"]
        assert tasks.classes(name) == ["0", "1"]
    assert tasks.class_counts()["HepG2"] == {"0": 12, "1": 12}


def test_single_file_with_task_column(task_dir, tasks, tmp_path):
    frames = [pd.read_csv(task_dir / name / "train.csv.gz") for name in CELL_TYPES]
    pd.concat(frames).to_csv(tmp_path / "all.csv", index=False)
    from_file = load_task_collection(tmp_path / "all.csv", task_column="cell_type")
    assert from_file.names == CELL_TYPES
    assert from_file.class_counts() == tasks.class_counts()
    with pytest.raises(ValueError, match="task_column"):
        load_task_collection(tmp_path / "all.csv")
    with pytest.raises(ValueError, match="no task column 'tissue'"):
        load_task_collection(tmp_path / "all.csv", task_column="tissue")


def test_task_folder_missing_files_is_an_error(task_dir, tmp_path):
    for name in CELL_TYPES[:2]:
        (tmp_path / name).mkdir()
        for split in ("train", "dev"):
            (tmp_path / name / f"{split}.csv.gz").write_bytes((task_dir / name / f"{split}.csv.gz").read_bytes())
    with pytest.raises(ValueError, match=f"{CELL_TYPES[0]} has no test file"):
        load_task_collection(tmp_path, split="test")
    (tmp_path / "empty_task").mkdir()
    with pytest.raises(ValueError, match="empty_task.*no train file"):
        load_task_collection(tmp_path)


def test_single_class_task_is_an_error(tmp_path):
    rows = [("ACGTACGTAC", "1", "A"), ("ACGTACGTAA", "0", "A"), ("TTGTACGTAC", "1", "B"), ("TTGTACGTAA", "1", "B")]
    pd.DataFrame(rows, columns=["sequence", "label", "task"]).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match="task 'B'.*single class '1'"):
        load_task_collection(tmp_path / "t.csv", task_column="task")


def test_split_tasks_holds_whole_tasks_out(tasks):
    split = split_tasks(tasks, meta_test=["HeLa"])
    assert split.meta_test == ["HeLa"] and "HeLa" not in split.meta_train
    assert sorted(split.meta_train + split.meta_test) == tasks.names
    by_fraction = split_tasks(tasks, meta_test=0.5, seed=3)
    assert by_fraction == split_tasks(tasks, meta_test=0.5, seed=3)
    assert len(by_fraction.meta_test) == 2 and not set(by_fraction.meta_test) & set(by_fraction.meta_train)
    with pytest.raises(ValueError, match="not in the collection"):
        split_tasks(tasks, meta_test=["Liver"])
    with pytest.raises(ValueError, match="leaves no meta-train task"):
        split_tasks(tasks, meta_test=0.99)
    everything = split_tasks(tasks, meta_test=0.0)  # meta-test tasks from another collection
    assert everything.meta_test == [] and everything.meta_train == tasks.names


@pytest.mark.data
def test_real_fewshot_collections_load():
    yeast = load_task_collection(shared_data("fewshot/gue_emp_yeast"))
    assert len(yeast) == 10 and yeast.classes("H3") == ["0", "1"]
    mouse = load_task_collection(shared_data("fewshot/gue_mouse_tf"), split="test")
    assert mouse.names == [f"mouse{i}" for i in range(5)]


# ---------------------------------------------------------------- episodes


def test_episode_sampler_is_seeded(tasks):
    def draw(seed):
        sampler = EpisodeSampler(tasks, n_way=2, k_shot=3, query_per_class=4, seed=seed)
        return [(e.task, e.support_index.tolist(), e.query_index.tolist()) for e in sampler.meta_batch(5, 3)]

    assert draw(0) == draw(0)
    assert draw(0) != draw(1)


def test_support_and_query_never_share_an_example(tasks):
    sampler = EpisodeSampler(tasks, n_way=2, k_shot=5, query_per_class=7, seed=0)
    for index in range(40):
        episode = sampler.sample(index)
        frame = tasks[episode.task]
        assert not set(episode.support_index) & set(episode.query_index)
        support_seqs = set(frame["sequence"].iloc[episode.support_index])
        assert not support_seqs & set(frame["sequence"].iloc[episode.query_index])
        assert sorted(episode.support_labels.tolist()) == [0] * 5 + [1] * 5
        assert sorted(episode.query_labels.tolist()) == [0] * 7 + [1] * 7
        # episode class i stands for original label classes[i]
        original = frame["label"].to_numpy()[episode.support_index]
        assert original.tolist() == [episode.classes[c] for c in episode.support_labels]


def test_meta_batch_uses_distinct_tasks(tasks):
    sampler = EpisodeSampler(tasks, n_way=2, k_shot=2, query_per_class=2, seed=0)
    assert sorted(e.task for e in sampler.meta_batch(0, 4)) == CELL_TYPES


def test_too_few_examples_names_task_and_class(tasks):
    with pytest.raises(ValueError, match=r"task 'GM12878'.*class '0' has 12"):
        EpisodeSampler(tasks, n_way=2, k_shot=8, query_per_class=8, seed=0)
    with pytest.raises(ValueError, match="meta.k_shot"):
        EpisodeSampler(tasks, n_way=2, k_shot=0, query_per_class=8)


def test_encode_episode_batches(tasks, tokenizer):
    episode = EpisodeSampler(tasks, n_way=2, k_shot=3, query_per_class=2, seed=0).sample(0)
    support, query = encode_episode(episode, tasks, tokenizer, MAX_LENGTH)
    assert support["input_ids"].shape == (6, MAX_LENGTH) and query["input_ids"].shape[0] == 4
    assert support["labels"].tolist() == episode.support_labels.tolist()
    assert [len(b["labels"]) for b in split_batch(support, 4)] == [4, 2]


# ---------------------------------------------------------------- Reptile


def test_meta_lr_schedule_is_linear():
    assert meta_lr_schedule(0, 100, 1.0, 0.0) == 1.0
    assert meta_lr_schedule(25, 100, 1.0, 0.2) == pytest.approx(0.8)
    assert meta_lr_schedule(100, 100, 1.0, 0.2) == pytest.approx(0.2)


def test_reptile_config_errors_name_the_flag():
    with pytest.raises(ValueError, match="meta.k_shot"):
        ReptileConfig(k_shot=0)
    with pytest.raises(ValueError, match="meta.final_meta_lr"):
        ReptileConfig(meta_lr=0.5, final_meta_lr=0.9)
    with pytest.raises(ValueError, match="meta.inner_optimizer"):
        ReptileConfig(inner_optimizer="lbfgs")


@pytest.fixture
def support(tasks, tokenizer):
    episode = EpisodeSampler(tasks, n_way=2, k_shot=4, query_per_class=4, seed=0).sample(0)
    return encode_episode(episode, tasks, tokenizer, MAX_LENGTH)


def test_snapshot_holds_only_trainable_parameters(tokenizer, support):
    model = tiny_model(tokenizer)
    frozen_before = {n: (id(p), p.data_ptr(), p.detach().clone()) for n, p in frozen(model).items()}
    snapshot = snapshot_trainable(model)
    assert sum(t.numel() for t in snapshot.values()) == trainable_parameter_count(model)
    assert all("lora_" in name or "modules_to_save" in name for name in snapshot)
    assert any("modules_to_save" in name for name in snapshot)  # the head trains
    reptile_meta_step(model, [[support[0]]], sgd(), inner_steps=2, meta_lr=0.5)
    for name, param in frozen(model).items():  # same tensors, same storage, same values
        ident, ptr, value = frozen_before[name]
        assert (id(param), param.data_ptr()) == (ident, ptr)
        assert torch.equal(param, value)
    assert changed(snapshot, trainable(model))


def test_meta_lr_zero_leaves_weights_unchanged(tokenizer, support):
    model = tiny_model(tokenizer)
    before = snapshot_trainable(model)
    inner_loop(model, sgd(), [support[0]], inner_steps=3)
    assert changed(before, trainable(model))  # the inner loop did move them
    reptile_step(model, before, meta_lr=0.0)
    assert_same(trainable(model), before)
    reptile_meta_step(model, [[support[0]], [support[1]]], sgd(), inner_steps=2, meta_lr=0.0)
    assert_same(trainable(model), before)


def test_one_task_one_step_meta_lr_one_equals_sgd(tokenizer, support):
    model = tiny_model(tokenizer)
    reference = copy.deepcopy(model)
    optimizer = torch.optim.SGD([p for p in reference.parameters() if p.requires_grad], lr=0.1)
    reference(**support[0])["loss"].backward()
    optimizer.step()
    before = trainable(model)
    reptile_meta_step(model, [[support[0]]], sgd(0.1), inner_steps=1, meta_lr=1.0)
    assert changed(before, trainable(model))
    assert_same(trainable(model), trainable(reference), atol=1e-7)


def test_meta_batch_update_is_mean_task_delta(tokenizer, support):
    model = tiny_model(tokenizer)
    before = trainable(model)
    adapted = []
    for batch in support:  # adapt a copy to each "task" on its own
        task_model = copy.deepcopy(model)
        inner_loop(task_model, sgd(), [batch], inner_steps=2)
        adapted.append(trainable(task_model))
    reptile_meta_step(model, [[support[0]], [support[1]]], sgd(), inner_steps=2, meta_lr=0.5)
    expected = {n: before[n] + 0.5 * ((adapted[0][n] - before[n]) + (adapted[1][n] - before[n])) / 2 for n in before}
    assert_same(trainable(model), expected, atol=1e-6)


def test_restore_trainable_rejects_a_foreign_snapshot(tokenizer):
    model = tiny_model(tokenizer)
    with pytest.raises(ValueError, match="does not match"):
        restore_trainable(model, {"head.weight": torch.zeros(2, 32)})


# ---------------------------------------------------------------- prototypical networks


def test_prototypes_are_class_means():
    embeddings = torch.tensor([[0.0, 0.0], [2.0, 4.0], [1.0, 1.0], [3.0, -1.0], [5.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 2, 2])
    expected = torch.tensor([[1.0, 2.0], [1.0, 1.0], [4.0, 0.0]])
    torch.testing.assert_close(compute_prototypes(embeddings, labels, 3), expected)
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have no support"):
        compute_prototypes(embeddings[:3], labels[:3], 3)


def test_prototype_logits_are_negative_squared_distances():
    query = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    # row 0: 1, 4, 25; row 1: 0 + 4, 1 + 0, 4 + 4
    expected = -torch.tensor([[1.0, 4.0, 25.0], [4.0, 1.0, 8.0]])
    torch.testing.assert_close(prototype_logits(query, prototypes), expected)
    cosine = prototype_logits(torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 0.0], [0.0, -3.0]]), "cosine", 0.5)
    torch.testing.assert_close(cosine, torch.tensor([[2 ** -0.5 / 0.5, -(2 ** -0.5) / 0.5]]))


def test_embed_reaches_through_peft(tokenizer, support):
    model = tiny_model(tokenizer).eval()
    batch = support[0]
    expected = model.get_base_model().embed(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(embed_batch(model, batch["input_ids"], batch["attention_mask"]), expected)


def test_protonet_classifier_on_a_frozen_backbone(tokenizer, tasks):
    torch.manual_seed(0)
    backbone = build_backbone(TINY, tokenizer).requires_grad_(False)
    frame = tasks["K562"]
    weights = {n: p.clone() for n, p in backbone.state_dict().items()}
    one_each = [frame[frame.label == c].sequence.iloc[0] for c in ("0", "1")]
    clf = ProtoNetClassifier(backbone, tokenizer, max_length=MAX_LENGTH, batch_size=8).fit(one_each, ["0", "1"])
    assert clf.predict(one_each) == ["0", "1"]  # distance 0 to its own prototype
    clf.fit(frame.sequence.tolist(), frame.label.tolist())
    assert clf.predict_logits(frame.sequence.tolist()[:5]).shape == (5, 2)
    assert set(clf.predict(frame.sequence.tolist())) <= {"0", "1"}
    assert_same({n: p for n, p in backbone.state_dict().items()}, weights)


# ---------------------------------------------------------------- a tiny peft model end to end


def test_tiny_peft_model_meta_trains_with_reptile_and_protonet(tokenizer, tasks):
    cfg = ReptileConfig(meta_steps=2, meta_batch_tasks=2, inner_steps=2, inner_lr=1e-2, k_shot=4, query_per_class=4,
                        inner_batch_size=4)
    sampler = EpisodeSampler(tasks, cfg.n_way, cfg.k_shot, cfg.query_per_class, seed=0)
    model = tiny_model(tokenizer)
    start, frozen_start = trainable(model), {n: p.clone() for n, p in frozen(model).items()}
    for step in range(cfg.meta_steps):
        batches = [split_batch(encode_episode(e, tasks, tokenizer, MAX_LENGTH)[0], cfg.inner_batch_size)
                   for e in sampler.meta_batch(step, cfg.meta_batch_tasks)]
        meta_lr = meta_lr_schedule(step, cfg.meta_steps, cfg.meta_lr, cfg.final_meta_lr)
        stats = reptile_meta_step(model, batches, inner_optimizer_factory(cfg), cfg.inner_steps, meta_lr)
        assert stats["tasks"] == 2 and stats["inner_loss"] > 0
    assert any("lora_B" in n for n in changed(start, trainable(model)))
    assert any("modules_to_save" in n for n in changed(start, trainable(model)))  # the head trains too
    assert_same({n: p for n, p in frozen(model).items()}, frozen_start)

    after_reptile = trainable(model)
    support, query = encode_episode(sampler.sample(99), tasks, tokenizer, MAX_LENGTH)
    metrics = adapt_and_evaluate(model, [support], query, inner_optimizer_factory(cfg), inner_steps=2)
    assert 0 <= metrics["query_accuracy"] <= 1
    assert_same(trainable(model), after_reptile)  # evaluation restored the weights

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(2):
        support, query = encode_episode(sampler.sample(step), tasks, tokenizer, MAX_LENGTH)
        out = protonet_loss(model, support, query, n_way=2)
        assert out["logits"].shape == (8, 2)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    assert any("lora_" in n for n in changed(after_reptile, trainable(model)))


# ---------------------------------------------------------------- distributed: 2 processes == 1 process


class ToyModel(nn.Module):
    """Frozen random features and a trainable head; returns {"loss", "logits"} like SequenceModel."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Linear(3, 4).requires_grad_(False)
        self.head = nn.Linear(4, 2)

    def forward(self, x, labels):
        logits = self.head(torch.tanh(self.backbone(x)))
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def toy_task_batches() -> list[list[dict[str, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(1)
    return [[{"x": torch.randn(6, 3, generator=generator), "labels": torch.randint(0, 2, (6,), generator=generator)}]
            for _ in range(4)]


def toy_meta_train(rank: int, world_size: int) -> dict[str, torch.Tensor]:
    model, tasks = ToyModel(), toy_task_batches()
    for step in range(3):
        reptile_meta_step(model, tasks[rank::world_size], sgd(0.3), inner_steps=2, meta_lr=0.7)
    return snapshot_trainable(model)


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        save_file(toy_meta_train(rank, world_size), os.path.join(out_dir, f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_two_processes_average_task_deltas_like_one(tmp_path):
    one = toy_meta_train(rank=0, world_size=1)
    mp.spawn(_ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1)]
    assert_same(ranks[0], ranks[1])  # every process applied the same update
    assert_same(ranks[0], one, atol=1e-6)


def test_meta_config_refuses_train_keys_it_would_ignore():
    from gr_ft.config import load_config
    from gr_ft.meta.config import MetaTrainConfig

    with pytest.raises(ValueError, match=r"train.lr -> meta.meta_lr"):
        load_config(MetaTrainConfig, None, ["train.lr=1e-4"])
    assert load_config(MetaTrainConfig, None, ["train.seed=3", "train.precision=fp32"]).train.seed == 3
