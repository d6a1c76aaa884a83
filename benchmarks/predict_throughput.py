"""`gr-ft predict` against the plain transformers loop a user would write, whole processes, side by side.

    OMP_NUM_THREADS=1 python benchmarks/predict_throughput.py                     # trains the runs it needs
    OMP_NUM_THREADS=1 python benchmarks/predict_throughput.py --tasks dna70 --run dna70=runs/prom --repeats 5
    OMP_NUM_THREADS=1 python benchmarks/predict_throughput.py --tasks dna70 --variants int8 compile sdpa-attention
    OMP_NUM_THREADS=1 python benchmarks/predict_throughput.py --tasks dna70 --levers 256 --levers-only  # in-process

For each task it needs a fine-tuned run (trained here in a minute or two unless ``--run TASK=DIR``):

- dna70:   ../shared/data/promoter/gue_prom_core_all, test split (first --n-dna rows), BERT 6x384, kmer6, LoRA
- dna300:  ../shared/data/promoter/gue_prom_300_tata, test split, same backbone shape
- protein: ../shared/data/localization/deeploc1, test split cut at --max-residues, ESM-2 6x320 (random weights
  from ../shared/models/esm2_t6_8M_UR50D/make_weights.py), LoRA

Runs are trained with ``train.precision=auto`` (what a user gets), so `gr-ft predict` uses the precision that
auto resolved to on this machine. The plain loop is what the issue describes: the run merged once with
``gr-ft merge`` beforehand (not timed), then tokenizer -> backbone + head ``.eval()`` under
``torch.inference_mode``, batches of 64 in input order, padding to the longest, fp32, CSV out.
Every measurement is a whole process (imports, loading, reading, writing included), methods alternated,
``--repeats`` times; the table shows medians of wall time, CPU time and the peak RSS of each process (``wait4``),
and each method's agreement with the plain loop's fp32 probabilities on the same rows: max |dprob|, and the
accuracy and AUROC (binary; macro one-vs-rest for multi-class) differences against the labels.
Extra rows (``--variants``) run `gr-ft predict` with an opt-in lever on (int8, compile) or a default lever off
(sdpa-attention, fp32, no-merge). ``--compile`` uses an inductor cache in the work folder that starts empty, so
its first repeat compiles cold and later ones hit the cache (per-repeat times are kept).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
TASKS = {
    "dna70": {"data": "data/promoter/gue_prom_core_all", "kind": "dna", "max_length": 512, "batch_size": 32},
    "dna300": {"data": "data/promoter/gue_prom_300_tata", "kind": "dna", "max_length": 512, "batch_size": 8},
    "protein": {"data": "data/localization/deeploc1", "kind": "protein", "max_length": 1002, "batch_size": 4},
}
DNA_MODEL = ["model.arch=bert", "model.hidden_size=384", "model.num_layers=6", "model.num_heads=6",
             "model.intermediate_size=1536", "model.tokenizer=kmer6"]
VARIANTS = {  # `gr-ft predict` flags per extra row
    "int8": ["--quantize", "int8"],                           # opt-in
    "compile": ["--compile"],                                 # opt-in
    "sdpa-attention": ["--eager-attention-max-tokens", "0"],  # default lever off (the engine before eager attention)
    "fp32": ["--precision", "fp32"],                          # default lever off
    "no-merge": ["--no-merge"],                               # default lever off
    "no-token-cap": ["--max-batch-tokens", "0"],              # default lever off (64 windows whatever their length)
}

PLAIN_LOOP = textwrap.dedent('''
    import sys, time
    import pandas as pd, torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    run, source, target, kmer = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    max_length = int(sys.argv[5])
    tokenizer = AutoTokenizer.from_pretrained(f"{run}/tokenizer")
    backbone = AutoModel.from_pretrained(f"{run}/backbone", add_pooling_layer=False)
    state = load_file(f"{run}/model.safetensors")
    head = torch.nn.Linear(state["task_head.1.weight"].shape[1], state["task_head.1.weight"].shape[0])
    head.load_state_dict({"weight": state["task_head.1.weight"], "bias": state["task_head.1.bias"]})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where gr-ft predicts too
    backbone.to(device).eval(); head.to(device).eval()
    sequences = pd.read_csv(source)["sequence"].str.upper().tolist()
    if kmer:
        sequences = [" ".join(s[i:i + kmer] for i in range(len(s) - kmer + 1)) for s in sequences]
    probs = []
    with torch.inference_mode():
        for i in range(0, len(sequences), 64):
            batch = tokenizer(sequences[i:i + 64], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt").to(device)
            hidden = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            probs.append(head((hidden * mask).sum(1) / mask.sum(1)).softmax(-1))
    pd.DataFrame(torch.cat(probs).cpu().numpy()).add_prefix("prob_").to_csv(target, index=False)
''')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--run", action="append", default=[], help="TASK=DIR: use this finished run")
    parser.add_argument("--work", default="/tmp/gr_ft_predict_bench", help="runs, inputs and outputs go here")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-dna", type=int, default=5000, help="test sequences of the DNA sets")
    parser.add_argument("--n-protein", type=int, default=2768, help="test sequences of deeploc1")
    parser.add_argument("--max-residues", type=int, default=1000)
    parser.add_argument("--train-steps", type=int, default=10, help="train.max_steps of the runs trained here")
    parser.add_argument("--variants", nargs="*", default=["int8", "sdpa-attention"], choices=list(VARIANTS),
                        help="extra `gr-ft predict` rows (default: int8 sdpa-attention)")
    parser.add_argument("--levers", type=int, default=0, metavar="N",
                        help="also time each engine lever in one process on the first N test sequences")
    parser.add_argument("--levers-only", action="store_true", help="only the in-process lever table")
    parser.add_argument("--json", help="write the results here as JSON")
    return parser.parse_args(argv)


def read_rows(path: Path, limit: int, max_chars: int | None = None, seed: int = 0) -> list[str]:
    """The header and ``limit`` rows drawn at random (seeded, file order kept): the first rows of a file sorted by
    label (DeepLoc's are) would hold one class only."""
    with gzip.open(path, "rt") as handle:
        lines = handle.read().splitlines()
    header, rows = lines[0], lines[1:]
    if limit < len(rows):
        rows = [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), limit))]
    if max_chars is not None:  # sequence,label: cut the sequence
        rows = [f"{r.split(',', 1)[0][:max_chars]},{r.split(',', 1)[1]}" for r in rows]
    return [header] + rows


def write_subset(task: str, folder: Path, sizes: dict[str, int], max_chars: int | None) -> Path:
    """A small train/dev/test copy (in the work folder, never the repo) for a quick training run."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        rows = read_rows(SHARED / TASKS[task]["data"] / f"{split}.csv.gz", n, max_chars)
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return folder


def gr_ft(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "gr_ft.cli", *args], check=True, stdout=subprocess.DEVNULL)


def train_run(task: str, work: Path, steps: int, max_residues: int) -> Path:
    out = work / f"run_{task}"
    if (out / "metrics.json").exists():
        return out
    protein = TASKS[task]["kind"] == "protein"
    sizes = {"train": 1000, "dev": 64, "test": 64}
    data = write_subset(task, work / f"data_{task}", sizes, max_residues if protein else None)
    common = [f"output_dir={out}", f"data.path={data}", f"data.max_length={TASKS[task]['max_length']}",
              "train.epochs=1", f"train.max_steps={steps}", "train.precision=auto", "overwrite=true"]
    if protein:
        esm = work / "esm2_t6_8M_UR50D"
        if not (esm / "model.safetensors").exists():
            subprocess.run([sys.executable, str(SHARED / "models/esm2_t6_8M_UR50D/make_weights.py"), str(esm)],
                           check=True, stdout=subprocess.DEVNULL)
        model = [f"model.name_or_path={esm}"]
    else:
        model = DNA_MODEL
    model = model + [f"train.batch_size={TASKS[task]['batch_size']}", "train.eval_batch_size=16"]
    print(f"training {task} run in {out} ...", flush=True)
    gr_ft("finetune", *common, *model)
    return out


def timed(command: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds (user + system) of one whole process.

    On a shared machine the wall time carries everybody's load; the CPU time of a 1-thread process is the work.
    """
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed ({status}): {' '.join(command)}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def bench_task(task: str, run: Path, args, work: Path) -> dict:
    protein = TASKS[task]["kind"] == "protein"
    n = args.n_protein if protein else args.n_dna
    source = work / f"input_{task}.csv"
    source.write_text("\n".join(read_rows(SHARED / TASKS[task]["data"] / "test.csv.gz", n,
                                          args.max_residues if protein else None)) + "\n")
    n = len(source.read_text().splitlines()) - 1
    merged = work / f"merged_{task}"
    if not (merged / "model.safetensors").exists():
        gr_ft("merge", str(run), str(merged))
    cfg = json.loads(subprocess.run([sys.executable, "-c", f"import json; from gr_ft.config import FinetuneConfig, "
                                     f"load_config, config_to_dict; print(json.dumps(config_to_dict(load_config("
                                     f"FinetuneConfig, '{run}/config.yaml'))))"], check=True, capture_output=True,
                                    text=True).stdout)
    kmer = cfg["model"]["tokenizer"] or ""
    k = int(kmer[4:]) if kmer.startswith("kmer") else 0
    plain_script = work / "plain_loop.py"
    plain_script.write_text(PLAIN_LOOP)
    outputs = {"plain loop": work / f"plain_{task}.csv", "gr-ft predict": work / f"pred_{task}.csv"}
    outputs.update({f"gr-ft predict ({name})": work / f"pred_{task}_{name}.csv" for name in args.variants})
    grft = [sys.executable, "-m", "gr_ft.cli", "predict", str(run), "--input", str(source), "--output"]
    commands = {"plain loop": [sys.executable, str(plain_script), str(merged), str(source), str(outputs["plain loop"]),
                               str(k), str(cfg["data"]["max_length"])],
                "gr-ft predict": grft + [str(outputs["gr-ft predict"])]}
    for name in args.variants:
        commands[f"gr-ft predict ({name})"] = grft + [str(outputs[f"gr-ft predict ({name})"])] + VARIANTS[name]
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(work / f"inductor_cache_{task}_{os.getpid()}"))
    samples = {name: [] for name in commands}
    machine = machine_state()
    for repeat in range(args.repeats):
        for name, command in commands.items():
            samples[name].append(timed(command, env))
            print(f"  {task} repeat {repeat + 1}: {name}: {samples[name][-1][0]:.1f} s wall, "
                  f"{samples[name][-1][2]:.1f} s CPU, {samples[name][-1][1]:.0f} MB", flush=True)
    result = {"task": task, "n": n, "run": str(run), "precision": cfg["train"]["precision"], "methods": {},
              "machine": machine}
    for name, values in samples.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[2] for v in values)
        result["methods"][name] = {"wall_s": wall, "seq_per_s": n / wall, "cpu_s": cpu, "seq_per_cpu_s": n / cpu,
                                   "peak_rss_mb": statistics.median(v[1] for v in values),
                                   "walls": [round(v[0], 2) for v in values], "cpus": [round(v[2], 2) for v in values]}
    plain = result["methods"]["plain loop"]
    labels = label_indices(source, run)
    reference = probabilities(outputs["plain loop"])
    for name, values in result["methods"].items():
        values["speedup_vs_plain"] = plain["wall_s"] / values["wall_s"]
        values["cpu_speedup_vs_plain"] = plain["cpu_s"] / values["cpu_s"]
        values["agreement_vs_plain"] = agreement(probabilities(outputs[name]), reference, labels)
    result["machine"]["load_after"] = os.getloadavg()
    return result


def machine_state() -> dict:
    """CPU model, bf16/AMX flags, the bf16 probe gr-ft decides precision by, torch threads, load average."""
    probe = subprocess.run([sys.executable, "-c", "import json, torch; from gr_ft import training; print(json.dumps("
                            "{'cpu': training.cpu_model(), 'flags': sorted(training.cpu_flags() & {'avx512_bf16', "
                            "'amx_bf16', 'avx512_vnni', 'amx_int8'}), 'bf16_probe_speedup': "
                            "training.bf16_matmul_speedup(), 'bf16_is_faster': training.cpu_has_bf16(), "
                            "'torch_threads': torch.get_num_threads(), 'torch': torch.__version__}))"],
                           check=True, capture_output=True, text=True).stdout
    return {**json.loads(probe), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_before": os.getloadavg()}


def label_indices(source: Path, run: Path) -> "np.ndarray":
    """The input's labels as class indices in the run's label order (the prob_* column order of both methods)."""
    import numpy as np
    import pandas as pd

    names = json.loads((run / "label_map.json").read_text())["names"]
    index = {str(name): i for i, name in enumerate(names)}
    return np.array([index[str(label)] for label in pd.read_csv(source)["label"]])


def probabilities(path: Path) -> "np.ndarray":
    import pandas as pd

    frame = pd.read_csv(path)
    return frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy(dtype="float64")


def auroc(scores: "np.ndarray", positive: "np.ndarray") -> float:
    """Rank-based AUROC (Mann-Whitney U, ties averaged)."""
    import pandas as pd

    ranks = pd.Series(scores).rank(method="average").to_numpy()
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auroc(probs: "np.ndarray", labels: "np.ndarray") -> float:
    import numpy as np

    if probs.shape[1] == 2:
        return auroc(probs[:, 1], labels == 1)
    per_class = [auroc(probs[:, c], labels == c) for c in range(probs.shape[1])]
    return float(np.nanmean(per_class))


def agreement(probs: "np.ndarray", reference: "np.ndarray", labels: "np.ndarray") -> dict:
    """How a method's probabilities agree with the plain loop's fp32 ones on the same rows."""
    accuracy = float((probs.argmax(1) == labels).mean())
    reference_accuracy = float((reference.argmax(1) == labels).mean())
    return {"max_abs_dprob": float(abs(probs - reference).max()), "mean_abs_dprob": float(abs(probs - reference).mean()),
            "same_argmax": float((probs.argmax(1) == reference.argmax(1)).mean()),
            "accuracy": accuracy, "accuracy_diff": accuracy - reference_accuracy,
            "auroc": macro_auroc(probs, labels), "auroc_diff": macro_auroc(probs, labels) - macro_auroc(reference, labels)}


LEVERS = {  # InferenceOptions fields per row; precision None = the run's recorded one (as this machine allows)
    "engine default": {},
    "SDPA attention throughout": {"eager_attention_max_tokens": 0},
    "fp32, merged": {"precision": "fp32"},
    "adapter unmerged": {"merge_adapter": False},
    "batch 16": {"batch_size": 16},
    "batch 32": {"batch_size": 32},
    "no token cap (64 windows)": {"max_batch_tokens": None},
    "int8 dynamic (opt-in)": {"quantize": "int8"},
}


def time_levers(task: str, run: Path, n: int, max_residues: int, repeats: int) -> dict:
    """Sequences per CPU second of ``Predictor.predict`` on ``n`` sequences for each lever, levers alternated within
    each repeat (one process, warm; CPU time of this process, robust to a shared machine's load for a 1-thread run),
    and each lever's max |dprob| against the engine in fp32."""
    import torch

    from gr_ft.inference import InferenceOptions
    from gr_ft.predictor import load_run

    protein = TASKS[task]["kind"] == "protein"
    rows = read_rows(SHARED / TASKS[task]["data"] / "test.csv.gz", n, max_residues if protein else None)[1:]
    sequences = [row.rsplit(",", 1)[0] for row in rows]
    predictors = {name: load_run(run, options=InferenceOptions(**fields)) for name, fields in LEVERS.items()}
    cpus: dict[str, list[float]] = {name: [] for name in LEVERS}
    probs = {}
    for name, predictor in predictors.items():
        probs[name] = torch.cat(predictor.logits(sequences[:8]))  # merge, warm-up
    for _ in range(repeats):
        for name, predictor in predictors.items():
            start = time.process_time()
            frame = predictor.predict(sequences)
            cpus[name].append(time.process_time() - start)
            probs[name] = frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy()
    result = {}
    for name, predictor in predictors.items():
        result[name] = {"seq_per_cpu_s": len(sequences) / statistics.median(cpus[name]), "cpus": cpus[name],
                        "precision": predictor.options.precision,
                        "max_abs_dprob_vs_fp32": float(abs(probs[name] - probs["fp32, merged"]).max())}
        ratio = result[name]["seq_per_cpu_s"] / result["engine default"]["seq_per_cpu_s"]  # the first row
        print(f"  lever {task}: {name} ({predictor.options.precision}): {result[name]['seq_per_cpu_s']:.1f} seq/CPU-s "
              f"(x{ratio:.2f} vs default), max|dprob| vs fp32 {result[name]['max_abs_dprob_vs_fp32']:.1e}", flush=True)
    return result


def print_table(results: list[dict]) -> None:
    print(f"\n{'task':<8} {'n':>5} {'method':<36} {'seq/s':>7} {'x plain':>7} {'seq/CPU-s':>9} {'x plain':>7} "
          f"{'peak MB':>7} {'max|dp|':>8} {'d acc':>7} {'d AUROC':>8}  walls (s) / CPU (s)")
    for result in results:
        for name, v in result["methods"].items():
            a = v.get("agreement_vs_plain", {})
            print(f"{result['task']:<8} {result['n']:>5} {name:<36} {v['seq_per_s']:>7.1f} {v['speedup_vs_plain']:>7.2f} "
                  f"{v['seq_per_cpu_s']:>9.1f} {v['cpu_speedup_vs_plain']:>7.2f} {v['peak_rss_mb']:>7.0f} "
                  f"{a.get('max_abs_dprob', float('nan')):>8.1e} {a.get('accuracy_diff', float('nan')):>+7.4f} "
                  f"{a.get('auroc_diff', float('nan')):>+8.4f}  {v['walls']} / {v['cpus']}")


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    given = dict(item.split("=", 1) for item in args.run)
    results = []
    for task in args.tasks:
        run = Path(given[task]) if task in given else train_run(task, work, args.train_steps, args.max_residues)
        if args.levers_only:
            results.append({"task": task, "run": str(run), "methods": {},
                            "levers": time_levers(task, run, args.levers, args.max_residues, args.repeats)})
            continue
        results.append(bench_task(task, run, args, work))
        if args.levers:
            results[-1]["levers"] = time_levers(task, run, args.levers, args.max_residues, args.repeats)
        print_table(results[-1:])
        if args.json:  # after every task, so a long run keeps what it measured
            write_json(Path(args.json), results)
    print_table(results)
    return results


def write_json(path: Path, results: list[dict]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
