"""The meta-learning recipes and `gr-ft adapt` end to end on tiny models and tiny synthetic cell-type tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import free_port
from gr_ft.cli import main as cli_main
from gr_ft.config import load_config, recipe_config_class
import gr_ft.meta.recipe
from gr_ft.meta import EpisodeSampler, ProtoNetClassifier
from gr_ft.meta.adapt import adapt_run, embed_sequences, init_prototype_head, prototype_head_weights
from gr_ft.meta.episodes import encode_labeled_sequences
from gr_ft.meta.config import MetaTrainConfig
from gr_ft.modeling import build_backbone
from gr_ft.recipes import finetune_lora, meta_protonet, meta_reptile
from gr_ft.run_folder import load_model_for_run
from gr_ft.predictor import load_run
from gr_ft.synthetic import cell_type_sequences
from gr_ft.tokenization import SequenceTokenizer

CONFIGS = Path(__file__).resolve().parent.parent / "recipes" / "configs"
RECIPES = {"reptile": meta_reptile, "protonet": meta_protonet}
HELD_OUT = "HeLa"
TINY = [
    "meta.synthetic_size=320", "meta.synthetic_length_bp=60", "max_length=64", "model.tokenizer=kmer3",
    "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "model.intermediate_size=64",
    "train.precision=fp32", "meta.meta_steps=3", "meta.eval_every_steps=2", "meta.checkpoint_every_steps=1",
    "meta.val_episodes=2", "meta.test_episodes=2", "meta.k_shot=4", "meta.query_per_class=4", "meta.inner_steps=2",
    f"meta.meta_test=[{HELD_OUT}]",
]
RUN_FILES = {"adapter", "tokenizer", "backbone", "base_model.json", "config.yaml", "label_map.json", "metrics.json",
             "meta.json"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run ~20x faster on one thread when the CPU is shared (no thread oversubscription)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class EpisodeLog:
    """Every episode any sampler of a recipe draws, tagged with the phase it was drawn in."""

    def __init__(self):
        self.phase = "meta-train"
        self.rows: list[tuple[str, tuple[str, ...], str]] = []  # phase, sampler's tasks, episode's task

    def sampler_class(self):
        log = self

        class RecordingSampler(EpisodeSampler):
            def meta_batch(self, step, n_tasks):
                episodes = super().meta_batch(step, n_tasks)
                log.rows += [(log.phase, tuple(self.task_names), e.task) for e in episodes]
                return episodes

        return RecordingSampler


def train_recorded(recipe, out: Path, extra=()) -> tuple[dict, EpisodeLog]:
    """Run a recipe with its sampler instrumented; meta_test() switches the phase."""
    log = EpisodeLog()
    real_meta_test = recipe.meta_test

    def meta_test(*args, **kwargs):
        log.phase = "meta-test"
        return real_meta_test(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gr_ft.meta.recipe, "EpisodeSampler", log.sampler_class())  # every sampler a recipe builds
        patch.setattr(recipe, "meta_test", meta_test)
        metrics = recipe.main(TINY + [f"output_dir={out}", *extra])
    return metrics, log


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny Reptile and a tiny ProtoNet run (3 meta-steps each), with their episode logs."""
    root = tmp_path_factory.mktemp("meta_runs")
    return {method: (root / method, *train_recorded(recipe, root / method)) for method, recipe in RECIPES.items()}


@pytest.fixture(scope="module")
def new_task(tmp_path_factory):
    """The held-out cell type as a user would bring it: 4 support examples per class and 40 to score."""
    folder = tmp_path_factory.mktemp("new_task")
    frame = cell_type_sequences(96, cell_types=[HELD_OUT], length_bp=60, seed=123)[["sequence", "label"]]
    support = pd.concat([frame[frame.label == c].head(4) for c in (0, 1)])
    support.to_csv(folder / "support.csv", index=False)
    frame.drop(support.index).head(40).to_csv(folder / "eval.csv", index=False)
    return folder


# ---------------------------------------------------------------- meta-training


@pytest.mark.parametrize("method", sorted(RECIPES))
def test_recipe_writes_a_meta_run_that_reloads(runs, method):
    out, metrics, _ = runs[method]
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    assert not (out / "checkpoints").exists() and not (out / ".staging").exists()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["method"] == method and meta["meta_test_tasks"] == [HELD_OUT]
    assert meta["meta_train_tasks"] == ["GM12878", "HepG2", "K562"]
    assert (meta["n_way"], meta["k_shot"], meta["classes"]) == (2, 4, ["0", "1"])
    saved = json.loads((out / "metrics.json").read_text())
    assert [h["step"] for h in saved["history"]] == [0, 2, 3] and saved["best_step"] in (2, 3)
    assert set(saved["meta_test"]["tasks"]) == {HELD_OUT}
    assert 0 <= saved["meta_test"]["mean"]["query_accuracy"] <= 1
    assert saved["processes"] == 1 and metrics["best_step"] == saved["best_step"]
    predictions = load_run(out).predict(["ACGT" * 15, "TTGACTCA" * 8])
    assert list(predictions.columns) == ["prediction", "prob_0", "prob_1"]


@pytest.mark.parametrize("method", sorted(RECIPES))
def test_meta_test_tasks_never_reach_meta_training(runs, method):
    _, _, log = runs[method]
    training = [row for row in log.rows if row[0] == "meta-train"]
    assert len(training) >= 3 * 2 + 2  # meta-batches (2 tasks x 3 steps) and validation episodes
    assert all(HELD_OUT not in tasks and task != HELD_OUT for _, tasks, task in training)
    assert {task for _, _, task in training} == {"GM12878", "HepG2", "K562"}
    # the instrument works: the held-out task is sampled, but only once meta-training is over
    assert {task for phase, _, task in log.rows if phase == "meta-test"} == {HELD_OUT}


def test_meta_test_task_unknown_fails_before_writing(tmp_path):
    with pytest.raises(ValueError, match=r"meta-test task\(s\) \['Liver'\] not in the collection"):
        meta_reptile.main(TINY + [f"output_dir={tmp_path / 'run'}", "meta.meta_test=[Liver]"])
    with pytest.raises(ValueError, match="meta.k_shot must be >= 1"):
        meta_protonet.main(TINY + [f"output_dir={tmp_path / 'run'}", "meta.k_shot=0"])
    with pytest.raises(ValueError, match="use recipes/meta_protonet.py"):
        meta_reptile.main(TINY + [f"output_dir={tmp_path / 'run'}", "meta.method=protonet"])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("method", sorted(RECIPES))
def test_interrupted_run_resumes_the_step_count(tmp_path, monkeypatch, method):
    from gr_ft.meta import recipe as shared  # the meta-training loop both recipes run

    recipe = RECIPES[method]
    reference = recipe.main(TINY + [f"output_dir={tmp_path / 'ref'}"])
    real_save, calls = shared.save_meta_checkpoint, []

    def crash_after_second_checkpoint(*args, **kwargs):
        real_save(*args, **kwargs)
        calls.append(args[1].step)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(shared, "save_meta_checkpoint", crash_after_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        recipe.main(TINY + [f"output_dir={tmp_path / 'run'}"])
    assert calls == [1, 2] and not (tmp_path / "run" / "metrics.json").exists()
    monkeypatch.setattr(shared, "save_meta_checkpoint", real_save)
    resumed = recipe.main(TINY + [f"output_dir={tmp_path / 'run'}"])
    assert [h["step"] for h in resumed["history"]] == [0, 2, 3]
    for ours, theirs in zip(resumed["history"], reference["history"]):
        assert ours["val_query_loss"] == pytest.approx(theirs["val_query_loss"], abs=1e-5)
    weights = [load_file(str(tmp_path / name / "adapter" / "adapter_model.safetensors")) for name in ("run", "ref")]
    for name, tensor in weights[1].items():
        torch.testing.assert_close(weights[0][name], tensor, atol=1e-5, rtol=0, msg=name)


# ---------------------------------------------------------------- adapting to a new task


def test_reptile_run_adapts_by_fine_tuning(runs, new_task, tmp_path):
    source = runs["reptile"][0]
    metrics = adapt_run(source, new_task / "support.csv", tmp_path / "adapted", eval_data=new_task / "eval.csv",
                        steps=3, lr=1e-2)
    assert metrics["adaptation"]["method"] == "finetune" and metrics["adaptation"]["support_counts"] == {"0": 4, "1": 4}
    assert metrics["eval"]["n"] == 40 and -1 <= metrics["eval"]["mcc"] <= 1
    assert json.loads((tmp_path / "adapted" / "metrics.json").read_text())["eval"] == metrics["eval"]
    before = load_file(str(source / "adapter" / "adapter_model.safetensors"))
    after = load_file(str(tmp_path / "adapted" / "adapter" / "adapter_model.safetensors"))
    assert any("lora_" in n and not torch.equal(before[n], after[n]) for n in before)  # the adapter trained
    assert any("task_head" in n and not torch.equal(before[n], after[n]) for n in before)  # and the head
    assert len(load_run(tmp_path / "adapted").predict(["ACGT" * 15])) == 1


def test_protonet_run_adapts_with_prototypes_as_the_head(runs, new_task, tmp_path, capsys):
    source = runs["protonet"][0]
    code = cli_main(["adapt", str(source), str(new_task / "support.csv"), str(tmp_path / "adapted"),
                     "--eval-data", str(new_task / "eval.csv")])
    assert code == 0 and "protonet" in capsys.readouterr().out
    assert json.loads((tmp_path / "adapted" / "metrics.json").read_text())["eval"]["n"] == 40
    # known answer: load_run's softmax over the head == softmax of -||q - mu_c||^2 with support prototypes
    support, queries = pd.read_csv(new_task / "support.csv"), pd.read_csv(new_task / "eval.csv").sequence.tolist()
    model, tokenizer, _, _ = load_model_for_run(source)
    temperature = json.loads((source / "meta.json").read_text())["temperature"]
    assert temperature != 1.0  # calibrated: the tiny random backbone's embeddings lie close together
    classifier = ProtoNetClassifier(model, tokenizer, max_length=64, temperature=temperature)
    classifier.fit(support.sequence.tolist(), support.label.astype(str).tolist())
    expected = classifier.predict_proba(queries).numpy()
    got = load_run(tmp_path / "adapted").predict(queries)[["prob_0", "prob_1"]].to_numpy()
    assert abs(got - expected).max() < 1e-4


def test_prototype_head_on_a_reptile_run_scores_like_calibrated_prototypes(runs, new_task, tmp_path):
    """Proto-MAML's start: Reptile's adapter, the support's prototypes as the head, unit-spread logits."""
    model, tokenizer, _, _ = load_model_for_run(runs["reptile"][0])
    support = pd.read_csv(new_task / "support.csv")
    sequences, labels = support.sequence.tolist(), support.label.tolist()
    temperature = init_prototype_head(model, tokenizer, sequences, labels, 2, max_length=64)
    embeddings = embed_sequences(model, tokenizer, sequences, max_length=64)
    prototypes = torch.stack([embeddings[torch.tensor(labels) == c].mean(0) for c in (0, 1)])
    expected = -torch.cdist(embeddings, prototypes) ** 2 / temperature
    batch = encode_labeled_sequences(tokenizer, sequences, labels, max_length=64)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])["logits"].float()
    torch.testing.assert_close(logits.softmax(-1), expected.softmax(-1), atol=1e-4, rtol=1e-3)
    assert abs(float((logits - logits.mean(-1, keepdim=True)).std()) - 1.0) < 1e-3  # calibrated on the support
    metrics = adapt_run(runs["reptile"][0], new_task / "support.csv", tmp_path / "adapted", method="protonet",
                        steps=2, lr=1e-3, eval_data=new_task / "eval.csv")
    assert metrics["adaptation"]["method"] == "protonet" and metrics["eval"]["n"] == 40


def test_prototype_head_weights_known_answer():
    prototypes, query = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.5, 0.5]])
    weight, bias = prototype_head_weights(prototypes)
    distances = -((query[:, None] - prototypes[None]) ** 2).sum(-1)  # -0.5, -2.5
    torch.testing.assert_close((query @ weight.T + bias).softmax(-1), distances.softmax(-1))


def test_any_fine_tuning_run_adapts(tiny_overrides, new_task, tmp_path):
    finetune_lora.main(tiny_overrides + ["train.epochs=1", "data.max_length=64"])
    metrics = adapt_run(tmp_path / "run", new_task / "support.csv", tmp_path / "adapted",
                        eval_data=new_task / "eval.csv", steps=2, k_shot=2)
    assert metrics["adaptation"]["support_counts"] == {"0": 2, "1": 2} and metrics["eval"]["n"] == 40


def test_new_task_with_its_own_label_names_adapts_with_new_labels(runs, new_task, tmp_path, capsys):
    """A cell-type task labelled HepG2/K562 after meta-training on 0/1: refused, unless --new-labels."""
    names = {"0": "K562", "1": "HepG2"}  # sorted: HepG2 -> output 0, K562 -> output 1
    for split in ("support", "eval"):
        frame = pd.read_csv(new_task / f"{split}.csv")
        frame.assign(label=frame.label.astype(str).map(names)).to_csv(tmp_path / f"{split}.csv", index=False)
    source = runs["protonet"][0]
    with pytest.raises(ValueError, match=r"support.csv:2: unknown label 'K562'.*--new-labels"):
        adapt_run(source, tmp_path / "support.csv", tmp_path / "adapted")
    code = cli_main(["adapt", str(source), str(tmp_path / "support.csv"), str(tmp_path / "adapted"),
                     "--eval-data", str(tmp_path / "eval.csv"), "--new-labels"])
    assert code == 0
    metrics = json.loads((tmp_path / "adapted" / "metrics.json").read_text())
    assert metrics["adaptation"]["classes"] == ["HepG2", "K562"] and metrics["eval"]["n"] == 40
    # same prototypes as the 0/1 labels with the class order swapped: the renamed run predicts the renamed classes
    assert cli_main(["adapt", str(source), str(new_task / "support.csv"), str(tmp_path / "plain")]) == 0
    queries = pd.read_csv(tmp_path / "eval.csv").sequence.tolist()
    renamed, plain = load_run(tmp_path / "adapted").predict(queries), load_run(tmp_path / "plain").predict(queries)
    assert list(renamed.columns) == ["prediction", "prob_HepG2", "prob_K562"]
    assert abs(renamed.prob_HepG2.to_numpy() - plain.prob_1.to_numpy()).max() < 1e-5
    assert (renamed.prediction == plain.prediction.astype(str).map(names)).all()


@pytest.mark.parametrize("rows,message", [
    ([("ACGTACGTACGT", "0"), ("ACGTTTGTACGT", "2")], r"support.csv:3: unknown label '2'"),
    ([("ACGTACGTACGT", "0"), ("ACGTTTGTACGT", "0")], r"class\(es\) \['1'\] have no support example"),
    ([("ACGTACGTACGT", "0"), ("ACGTTTGTACGT", "1"), ("ACGTZZ", "1")], r"support.csv:4: invalid dna"),
])
def test_bad_support_fails_before_writing(runs, tmp_path, capsys, rows, message):
    pd.DataFrame(rows, columns=["sequence", "label"]).to_csv(tmp_path / "support.csv", index=False)
    with pytest.raises(ValueError, match=message):
        adapt_run(runs["reptile"][0], tmp_path / "support.csv", tmp_path / "adapted")
    assert cli_main(["adapt", str(runs["reptile"][0]), str(tmp_path / "support.csv"), str(tmp_path / "adapted")]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "adapted").exists() and [p.name for p in tmp_path.iterdir()] == ["support.csv"]


def test_too_few_examples_and_existing_output(runs, new_task, tmp_path):
    source = runs["reptile"][0]
    with pytest.raises(ValueError, match=r"too few examples for --k-shot 5: \{'0': 4, '1': 4\}"):
        adapt_run(source, new_task / "support.csv", tmp_path / "adapted", k_shot=5)
    with pytest.raises(ValueError, match="has no test split"):
        adapt_run(source, new_task / "support.csv", tmp_path / "adapted", eval_data=new_task)
    assert not (tmp_path / "adapted").exists()
    adapt_run(source, new_task / "support.csv", tmp_path / "adapted", steps=1)
    with pytest.raises(ValueError, match="already holds a finished run"):
        adapt_run(source, new_task / "support.csv", tmp_path / "adapted", steps=1)


# ---------------------------------------------------------------- configs and command line


META_CONFIGS = sorted(CONFIGS.glob("meta_*.yaml"))


@pytest.mark.parametrize("path", META_CONFIGS, ids=[p.name for p in META_CONFIGS])
def test_meta_configs_validate_and_show_their_command(path):
    header = [line for line in path.read_text().splitlines()[:12] if line.startswith("#")]
    assert any("recipes/meta_" in line and "--config recipes/configs/" + path.name in line for line in header)
    assert recipe_config_class(path) is MetaTrainConfig
    cfg = load_config(MetaTrainConfig, path)
    assert cfg.meta.method in path.name


def test_synthetic_config_spells_out_the_builtin_default():
    assert load_config(MetaTrainConfig, CONFIGS / "meta_reptile_synthetic.yaml") == load_config(MetaTrainConfig, None)


def test_adapt_help_ends_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["adapt", "--help"])
    assert exit_info.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_meta_training_from_a_pretrained_backbone_folder(tmp_path):
    """model.name_or_path: nothing is built from config, so the run folder has no backbone/ of its own."""
    cfg = load_config(MetaTrainConfig, None, TINY)
    tokenizer = SequenceTokenizer.from_pretrained("kmer3")
    build_backbone(cfg.model, tokenizer).save_pretrained(str(tmp_path / "pretrained"))
    meta_protonet.main(TINY + [f"output_dir={tmp_path / 'run'}", f"model.name_or_path={tmp_path / 'pretrained'}",
                               "model.tokenizer=kmer3", "meta.meta_steps=2"])
    assert "backbone" not in {p.name for p in (tmp_path / "run").iterdir()}
    assert json.loads((tmp_path / "run" / "base_model.json").read_text())["built_from_config"] is False
    assert len(load_run(tmp_path / "run").predict(["ACGT" * 15])) == 1


@pytest.mark.distributed
@pytest.mark.parametrize("method", sorted(RECIPES))
def test_torchrun_two_processes_match_one(tmp_path, method):
    """gloo on CPU: episodes shared out across 2 processes give the single-process meta-update."""
    import os
    import shutil
    import subprocess
    import sys

    script = Path(RECIPES[method].__file__)
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    deterministic = TINY + ["model.dropout=0", "model.head_dropout=0", "adapter.dropout=0", "meta.val_episodes=3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, launcher in (("one", [sys.executable]), ("two", [torchrun, "--nproc_per_node", "2", "--master_port",
                                                               str(free_port())])):
        result = subprocess.run([*launcher, str(script), *deterministic, f"output_dir={tmp_path / name}"],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    one, two = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("one", "two"))
    assert (one["processes"], two["processes"]) == (1, 2)
    for h1, h2 in zip(one["history"], two["history"]):
        assert h2["val_query_loss"] == pytest.approx(h1["val_query_loss"], abs=1e-4)
    assert two["meta_test"]["mean"]["query_loss"] == pytest.approx(one["meta_test"]["mean"]["query_loss"], abs=1e-4)
