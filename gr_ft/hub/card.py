"""The model card of a run: facts from the run folder, rendered into model_cards/adapter_card.md, checked."""

from __future__ import annotations

import logging
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import huggingface_hub
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..config import FinetuneConfig
from ..labels import LabelSpec
from ..utils import is_hub_id
from ..run_state import MARKER
from ..tokenization import shipped_dir
from ..run_folder import LEAKAGE_REPORT, RunFolder, read_json, read_run_folder
from .repo_files import REPO_ITEMS, item_size_mb, repo_items

logger = logging.getLogger(__name__)

CARD_TEMPLATE = shipped_dir("model_cards") / "adapter_card.md"
DEFAULT_LICENSE = "unknown"
PIPELINE_TAGS = {"token_classification": "token-classification"}  # every other task: text-classification
TASK_TAGS = {
    "binary": "binary-classification",
    "multiclass": "multiclass-classification",
    "multilabel": "multilabel-classification",
    "regression": "regression",
    "token_classification": "token-classification",
}
# gr-ft metric names -> Hub (evaluate) metric ids for model-index; `n` is a count, not a metric.
HUB_METRIC_IDS = {"mcc": "matthews_correlation", "auroc": "roc_auc", "auprc": "pr_auc", "pearson": "pearsonr",
                  "spearman": "spearmanr", "macro_f1": "f1", "micro_f1": "f1"}
COUNT_METRICS = ("n",)
REQUIRED_METADATA = ("license", "tags", "pipeline_tag", "model-index")
METHOD_NAMES = {"lora": "LoRA", "dora": "DoRA", "ia3": "IA3", "full": "full fine-tuning"}
EXAMPLE_SEQUENCES = {"dna": "TATAAAAGGCGCGCCTATAAAAGGCGCGCCTATAAAAGGC", "protein": "MKTAYIAKQRQISFVKSHFSRQLEERLG"}


# ---------------------------------------------------------------- Hub ids


def check_repo_id(repo_id: Optional[str]) -> str:
    if not repo_id or not is_hub_id(repo_id):
        raise ValueError(f"Hub repo id {repo_id!r} is not of the form <user or organisation>/<name>, "
                         f"e.g. me/promoter-lora")
    try:
        huggingface_hub.utils.validate_repo_id(repo_id)
    except huggingface_hub.errors.HFValidationError as err:
        raise ValueError(f"Hub repo id {repo_id!r} is invalid: {err}") from err
    return repo_id


# ---------------------------------------------------------------- citations


@dataclass(frozen=True)
class Citation:
    """A model or data set citation, found by a regular expression in a Hub id or data path."""

    name: str
    pattern: str
    """Searched (case-insensitive) in the base model id or the data path."""
    text: str


CITATIONS_FILE = shipped_dir("model_cards") / "citations.yaml"


def load_citations(path: Path = CITATIONS_FILE) -> tuple[Citation, ...]:
    """The citation table (``model_cards/citations.yaml``: name, pattern, text per entry), in match order."""
    with open(path, encoding="utf-8") as handle:
        return tuple(Citation(**entry) for entry in yaml.safe_load(handle))


KNOWN_CITATIONS: tuple[Citation, ...] = load_citations()


def find_citation(name: Optional[str]) -> Optional[Citation]:
    """The first known citation whose pattern occurs in ``name`` (a Hub id or a data path), else None.

    Example:
        >>> find_citation("zhihan1996/DNABERT-2-117M").name
        'DNABERT-2'
    """
    if not name:
        return None
    return next((c for c in KNOWN_CITATIONS if re.search(c.pattern, name, flags=re.IGNORECASE)), None)


# ---------------------------------------------------------------- model card: facts


def _alphabet(run: RunFolder) -> str:
    if run.cfg.data.alphabet != "auto":
        return run.cfg.data.alphabet
    from ..tokenization import SequenceTokenizer

    return SequenceTokenizer.from_pretrained(str(run.path / "tokenizer")).alphabet


def _dataset_slug(data_path: str) -> str:
    """A short dataset name for model-index: the Hub id, ``synthetic-<task>``, or the file/folder name."""
    if data_path.startswith("synthetic:"):
        return "synthetic-" + data_path.split(":", 1)[1]
    if is_hub_id(data_path):
        return data_path
    name = Path(data_path.rstrip("/")).name
    return re.sub(r"(\.(csv|tsv|txt|parquet|jsonl?|fa|fasta|fna|gz))+$", "", name) or "local-data"


def _data_text(data_path: str) -> str:
    if data_path.startswith("synthetic:"):
        return f"synthetic `{data_path.split(':', 1)[1]}` data from gr-ft's generator (`{data_path}`)"
    if is_hub_id(data_path):
        return f"Hub dataset [{data_path}](https://huggingface.co/datasets/{data_path})"
    return f"local data `{data_path}` (not on the Hub)"


def _reported_metrics(test: dict) -> dict[str, float]:
    """Test metrics that go into model-index: finite numbers, counts left out."""
    return {name: float(value) for name, value in test.items()
            if name not in COUNT_METRICS and isinstance(value, (int, float)) and math.isfinite(value)}


def _base_text(run: RunFolder) -> str:
    base, cfg = run.original_base, run.cfg
    fingerprint = f"weight fingerprint `{base.fingerprint[:16]}`"
    if base.built_from_config:
        return (f"none: a `{cfg.model.arch}` backbone built from config (random initialisation, not pretrained; "
                f"hidden size {cfg.model.hidden_size}, {_plural(cfg.model.num_layers, 'layer')}, "
                f"{_plural(cfg.model.num_heads, 'head')}), "
                f"{fingerprint}")
    revision = f" at revision `{base.revision}`" if base.revision else ""
    if is_hub_id(base.name_or_path):
        return f"[{base.name_or_path}](https://huggingface.co/{base.name_or_path}){revision}, {fingerprint}"
    return (f"a local folder `{base.name_or_path}` (not a Hub id, so not linked as `base_model`){revision}, "
            f"{fingerprint}")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def _adapter_targets(run: RunFolder) -> str:
    """Adapted modules as saved by peft (the config may leave them to the per-architecture default)."""
    saved = read_json(run.path / "adapter" / "adapter_config.json") if run.has_adapter else None
    targets = (saved or run.merged_from or {}).get("target_modules") or run.cfg.adapter.target_modules
    return ", ".join(sorted(targets)) if targets else "chosen per architecture"


def _weights_text(run: RunFolder) -> str:
    adapter = run.cfg.adapter
    if run.merged_from:
        return (f"full weights (`model.safetensors`): the {METHOD_NAMES[adapter.method]} adapter (r={adapter.r}) of run "
                f"`{Path(run.merged_from['source_run']).name}` merged into the base weights with peft "
                f"`merge_and_unload()`. `backbone/` repeats the merged backbone weights (the gr-ft loader builds the "
                f"backbone from it, then loads `model.safetensors`), so the folder loads standalone")
    if not run.has_adapter:
        return "full fine-tuning: every weight trained, all in `model.safetensors`"
    rank = f" with rank r={adapter.r}, alpha={adapter.alpha}" if adapter.method in ("lora", "dora") else ""
    head = f"a trained {run.cfg.model.pooling}-pooled task head"
    return f"a {METHOD_NAMES[adapter.method]} adapter (peft){rank}, plus {head}"


def _task_text(spec: LabelSpec) -> str:
    names = ", ".join(f"`{n}`" for n in spec.names[:20]) + (" ..." if len(spec.names) > 20 else "")
    if spec.problem_type == "regression":
        return "regression: one value per sequence"
    if spec.problem_type == "token_classification":
        return f"per-position classification: one label per sequence position, labels {names}"
    return f"{TASK_TAGS[spec.problem_type].replace('-', ' ')} over {spec.num_labels} labels: {names}"


def _domain_text(run: RunFolder, alphabet: str) -> str:
    letters = "A, C, G, T, N" if alphabet == "dna" else "the 20 amino acids plus X, B, Z, U, O"
    tokenizer = run.cfg.model.tokenizer or run.cfg.model.name_or_path or "the default"
    return (f"{alphabet.upper() if alphabet == 'dna' else 'protein'} sequences ({letters}), tokenized with the "
            f"`{tokenizer}` tokenizer, at most {run.cfg.data.max_length} tokens per sequence")


def _splits_text(cfg: FinetuneConfig) -> str:
    data = cfg.data
    if data.path.startswith("synthetic:"):
        return "train, dev and test generated independently by the synthetic generator"
    return (f"the data's own train/dev/test split files where present; a missing dev or test split is held out "
            f"at random from train (dev_fraction={data.dev_fraction}, test_fraction={data.test_fraction}, "
            f"seed {cfg.train.seed})")


def _sizes(run: RunFolder) -> list[str]:
    recorded = run.metrics.get("split_sizes")
    if isinstance(recorded, dict):
        return ["**Sizes:** " + ", ".join(f"{k} {v}" for k, v in recorded.items())]
    if run.cfg.data.path.startswith("synthetic:"):
        size = run.cfg.data.synthetic_size
        return [f"**Sizes:** train {size}, dev {max(size // 4, 8)}, test {max(size // 4, 8)} (generated)"]
    n = run.metrics.get("test", {}).get("n")
    return [f"**Sizes:** test n = {int(n)} scored items; train/dev sizes were not recorded"] if n else []


def _training_rows(run: RunFolder, seeds: list[int]) -> list[tuple[str, str]]:
    cfg, metrics = run.cfg, run.metrics
    adapter = cfg.adapter
    method = METHOD_NAMES["full"] if adapter.method == "full" else (
        f"{METHOD_NAMES[adapter.method]} (r={adapter.r}, alpha={adapter.alpha}, dropout={adapter.dropout}; "
        f"adapted modules: {_adapter_targets(run)})")
    rows = [("method", method), ("learning rate", f"{cfg.train.lr:g} (AdamW, weight decay {cfg.train.weight_decay}, "
                                                   f"warm-up fraction {cfg.train.warmup_fraction})"),
            ("epochs", f"{cfg.train.epochs}" + (f" (max_steps {cfg.train.max_steps})" if cfg.train.max_steps else "")),
            ("batch size", f"{cfg.train.batch_size} (gradient accumulation {cfg.train.grad_accum_steps})"),
            ("precision", cfg.train.precision),
            ("pooling / head dropout", f"{cfg.model.pooling} / {cfg.model.head_dropout}"),
            ("class weighting", cfg.train.class_weighting),
            ("seed" if len(seeds) == 1 else "seeds", ", ".join(str(s) for s in seeds))]
    if "processes" in metrics:
        rows.append(("processes / wall time", f"{metrics['processes']} / {metrics.get('wall_time_s', '?')} s"))
    return rows


def _seed_run_tests(run: RunFolder, seed_runs: Sequence[str | Path]) -> list[tuple[int, dict]]:
    """(seed, test metrics) of this run and of ``seed_runs``, which must be the same task with other seeds."""
    results = [(run.cfg.train.seed, run.metrics.get("test", {}))]
    for folder in seed_runs:
        other = read_run_folder(folder)
        if (other.spec.problem_type, other.spec.names, other.cfg.data.path) != (
                run.spec.problem_type, run.spec.names, run.cfg.data.path):
            raise ValueError(f"seed run {folder} is a different task or data set than {run.path} "
                             f"({other.cfg.data.path}, {other.spec.problem_type}); pass runs of the same config")
        if other.cfg.train.seed in [seed for seed, _ in results]:
            raise ValueError(f"seed run {folder} repeats train.seed={other.cfg.train.seed}; seed runs need distinct "
                             f"seeds to give a meaningful sd")
        results.append((other.cfg.train.seed, other.metrics.get("test", {})))
    return results


def _evaluation_rows(results: list[tuple[int, dict]]) -> list[dict[str, str]]:
    rows = []
    for name, value in results[0][1].items():
        if name in COUNT_METRICS or not isinstance(value, (int, float)):
            continue
        values = [float(test[name]) for _, test in results if isinstance(test.get(name), (int, float))]
        mean_sd = (f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} (n={len(values)})"
                   if len(values) > 1 else "-")
        rows.append({"name": name, "value": f"{value:.4f}", "mean_sd": mean_sd})
    return rows


def _selection_text(run: RunFolder) -> str:
    dev = next(((k, v) for k, v in run.metrics.items() if k.startswith("dev_") and isinstance(v, (int, float))), None)
    text = f"best dev epoch {run.metrics.get('best_epoch', '?')}"
    return text + (f", dev {dev[0][4:]} = {dev[1]:.4f}" if dev else "")


def _leakage_text(leakage: Optional[dict]) -> str:
    if leakage is None:
        return (f"Train/test leakage was not checked for this run (no {LEAKAGE_REPORT} in the run folder): identical "
                f"or near-identical sequences across splits would inflate the test metrics. Check with "
                f"`gr_ft.leakage.leakage_report`.")
    parts = []
    for pair, entry in leakage.get("pairs", {}).items():
        later = pair.split("-", 1)[-1]
        leaked, fraction = entry.get("leaked_rows", {}).get(later), entry.get("leaked_fraction", {}).get(later)
        if leaked is not None and fraction is not None:
            parts.append(f"{pair}: {leaked} {later} rows ({100 * fraction:.2f}%) have an exact or near copy")
    threshold, k = leakage.get("threshold", "?"), leakage.get("k", "?")
    return (f"Leakage check ({LEAKAGE_REPORT}; near-duplicate = {k}-mer Jaccard >= {threshold}): "
            + ("; ".join(parts) if parts else "no split pairs reported") + ".")


def _limitations(run: RunFolder, alphabet: str) -> list[str]:
    cfg, base = run.cfg, run.original_base
    lines = [f"Trained and tested only on {_data_text(cfg.data.path)}; the config records no species, cell type or "
             f"assay, so do not assume it transfers beyond data like that.",
             f"Sequences longer than {cfg.data.max_length} tokens (special tokens included) are cut to that length, "
             f"keeping the {cfg.data.crop} (data.crop={cfg.data.crop}); `predict` cuts the same way, so only that part "
             f"of a longer sequence is scored.",
             _leakage_text(run.leakage)]
    if cfg.data.path.startswith("synthetic:"):
        lines.append("Synthetic data: the sequences and labels come from gr-ft's generator with a planted grammar. "
                     "This is a demonstration model; its scores say nothing about real biology.")
    if base.built_from_config:
        lines.append("The backbone was never pretrained (random initialisation), so expect far weaker results than "
                     "with a pretrained DNA or protein language model.")
    n = run.metrics.get("test", {}).get("n")
    if isinstance(n, (int, float)) and n < 1000:
        lines.append(f"Small test set (n = {int(n)}): differences of a few points are within noise.")
    return lines


def _citations(run: RunFolder) -> list[dict[str, str]]:
    base, data_path = run.original_base, run.cfg.data.path
    if base.built_from_config:
        base_text = "none: the backbone was built from config (no pretrained model to cite)"
    else:
        found = find_citation(base.name_or_path)
        base_text = found.text if found else f"citation unknown for `{base.name_or_path}`; see its model card"
    if data_path.startswith("synthetic:"):
        data_text = "none: synthetic data from gr-ft's generator"
    else:
        found = find_citation(data_path)
        data_text = found.text if found else f"citation unknown for `{data_path}`; cite the data's source"
    return [{"role": "Base model", "text": base_text}, {"role": "Data", "text": data_text}]


# ---------------------------------------------------------------- model card: rendering and checks


def card_metadata(run: RunFolder, model_name: str, alphabet: str, license: str = DEFAULT_LICENSE) -> ModelCardData:
    """The YAML header: library, tags, pipeline tag, license, base model (Hub ids only), test metrics."""
    cfg, spec, base = run.cfg, run.spec, run.original_base
    pipeline_tag = PIPELINE_TAGS.get(spec.problem_type, "text-classification")
    method_tag = "full-fine-tuning" if cfg.adapter.method == "full" else cfg.adapter.method
    tags = ["gr-ft", "genomics" if alphabet == "dna" else "proteomics", method_tag, TASK_TAGS[spec.problem_type]]
    tags += ["merged"] * bool(run.merged_from) + ["synthetic-data"] * cfg.data.path.startswith("synthetic:")
    slug = _dataset_slug(cfg.data.path)
    metrics = _reported_metrics(run.metrics.get("test", {}))
    results = [EvalResult(task_type=pipeline_tag, dataset_type=slug, dataset_name=slug, dataset_split="test",
                          metric_type=HUB_METRIC_IDS.get(name, name), metric_name=name, metric_value=value)
               for name, value in metrics.items()]
    return ModelCardData(
        base_model=base.name_or_path if is_hub_id(base.name_or_path) and not base.built_from_config else None,
        datasets=[cfg.data.path] if is_hub_id(cfg.data.path) else None,
        library_name="peft" if run.has_adapter else None, license=license, pipeline_tag=pipeline_tag, tags=tags,
        metrics=sorted({HUB_METRIC_IDS.get(n, n) for n in metrics}) or None, model_name=model_name,
        eval_results=results or None,
    )


def card_context(run: RunFolder, load_target: str, alphabet: str,
                 seed_runs: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Everything the card template shows, as plain values (the template only lays it out)."""
    results = _seed_run_tests(run, seed_runs)
    base = run.original_base
    needs_base = not base.built_from_config and not is_hub_id(base.name_or_path) and run.has_adapter
    kind = "adapter" if run.has_adapter else "model"
    return {
        "title": f"{Path(load_target).name}: {TASK_TAGS[run.spec.problem_type].replace('-', ' ')} {kind} "
                 f"for {alphabet.upper() if alphabet == 'dna' else 'protein'} sequences",
        "summary": f"A {TASK_TAGS[run.spec.problem_type].replace('-', ' ')} model fine-tuned with gr-ft on "
                   f"{_data_text(run.cfg.data.path)}.",
        "cfg": run.cfg, "weights_text": _weights_text(run), "base_text": _base_text(run),
        "task_text": _task_text(run.spec), "task_short": TASK_TAGS[run.spec.problem_type].replace("-", " ") + " labels",
        "domain_text": _domain_text(run, alphabet), "domain_noun": "DNA" if alphabet == "dna" else "protein",
        "files": [{"name": name + "/" * (run.path / name).is_dir(), "size_mb": f"{item_size_mb(run, name):.3f}",
                   "what": REPO_ITEMS[name]} for name in repo_items(run)],
        "backbone_required": run.base.built_from_config and run.has_adapter,
        "data_text": _data_text(run.cfg.data.path), "splits_text": _splits_text(run.cfg), "sizes": _sizes(run),
        "training": _training_rows(run, [seed for seed, _ in results]), "selection_text": _selection_text(run),
        "seeds": [seed for seed, _ in results], "evaluation": _evaluation_rows(results),
        "limitations": _limitations(run, alphabet), "citations": _citations(run),
        "load_target": load_target, "needs_base_argument": needs_base,
        "base_name": Path(base.name_or_path or "base").name, "example_sequence": EXAMPLE_SEQUENCES[alphabet],
        "probability_columns": _probability_columns(run.spec),
    }


def _probability_columns(spec: LabelSpec) -> str:
    if spec.problem_type in ("regression", "token_classification"):
        return ""
    columns = [f"prob_{n}" for n in spec.names]
    return ", ".join(columns[:3]) + (", ..." if len(columns) > 3 else "")


def render_model_card(run_dir: str | Path, repo_id: Optional[str] = None, seed_runs: Sequence[str | Path] = (),
                      license: str = DEFAULT_LICENSE) -> ModelCard:
    """The model card (README.md) of a run folder, with its Hub metadata checked locally.

    ``seed_runs``: run folders of the same config with other ``train.seed`` values; the card then
    reports mean ± sd over all of them. The metadata always holds this run's own test metrics.

    Example:
        >>> card = render_model_card("runs/demo", repo_id="me/promoter-lora")  # doctest: +SKIP
        >>> card.data.library_name, card.data.eval_results[0].metric_value  # doctest: +SKIP
        ('peft', 0.62)
    """
    if not CARD_TEMPLATE.exists():
        raise ValueError(f"model card template {CARD_TEMPLATE} is missing; reinstall gr-ft from a full checkout")
    run = read_run_folder(run_dir)
    load_target = check_repo_id(repo_id) if repo_id else str(run.path)
    alphabet = _alphabet(run)
    context = card_context(run, load_target, alphabet, seed_runs)
    data = card_metadata(run, Path(load_target).name, alphabet, license)
    card = ModelCard.from_template(data, template_path=str(CARD_TEMPLATE), **context)
    check_card_metadata(card, run)
    return card


def _yaml_header(text: str) -> dict:
    match = re.match(r"\A---\n(.*?)\n---\n", text, flags=re.DOTALL)
    if not match:
        raise ValueError("model card has no YAML metadata header between --- lines")
    try:
        header = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        raise ValueError(f"model card metadata is not valid YAML: {err}") from err
    if not isinstance(header, dict):
        raise ValueError(f"model card metadata must be a mapping, got {type(header).__name__}")
    return header


def check_card_metadata(card: ModelCard | str, run: Optional[RunFolder] = None) -> dict:
    """Check a card's Hub metadata offline (``ModelCard.validate`` needs the network); returns the header.

    The YAML parses, required keys are present, ``model-index`` round-trips through ``ModelCardData``,
    ``base_model`` is a Hub id, and (given the run) the metric values equal ``metrics.json``.

    Example:
        >>> check_card_metadata(render_model_card("runs/demo"))["library_name"]  # doctest: +SKIP
        'peft'
    """
    header = _yaml_header(str(card))
    missing = [key for key in REQUIRED_METADATA if key not in header]
    if missing:
        raise ValueError(f"model card metadata lacks {missing}")
    if "base_model" in header and not is_hub_id(header["base_model"]):
        raise ValueError(f"model card base_model {header['base_model']!r} is not a Hub id; the Hub rejects local paths")
    if header["pipeline_tag"] not in ("text-classification", "token-classification"):
        raise ValueError(f"model card pipeline_tag {header['pipeline_tag']!r} is not a classification pipeline")
    parsed = ModelCardData(**header)  # parses model-index; raises ValueError when malformed
    if yaml.safe_load(parsed.to_yaml()) != header:
        raise ValueError("model card metadata does not round-trip through huggingface_hub.ModelCardData")
    if run is not None:
        _check_card_against_run(header, parsed, run)
    return header


def _check_card_against_run(header: dict, parsed: ModelCardData, run: RunFolder) -> None:
    expected = _reported_metrics(run.metrics.get("test", {}))
    found = {result.metric_name: result.metric_value for result in parsed.eval_results or []}
    if found != expected:
        raise ValueError(f"model card metrics {found} differ from {run.path / MARKER} test metrics {expected}")
    if run.has_adapter and header.get("library_name") != "peft":
        raise ValueError("model card of an adapter must say library_name: peft")
    if run.original_base.built_from_config and "base_model" in header:
        raise ValueError("model card names a base_model although the backbone was built from config")
