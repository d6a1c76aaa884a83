"""Packed training (``train.packing``) against the tuned plain path, alternated in one run, on DeepLoc.

    python benchmarks/packing.py --steps 40 --chunk 4 --dev-size 300 --output docs/packing.json

Arms (each in its own process, so peak memory is its own; the parent lets one arm train at a time and
alternates them every ``--chunk`` steps, swapping who goes first each round, so machine load hits all alike):

* ``plain``: transformers ``EsmForSequenceClassification`` + peft ``LoraConfig(task_type="SEQ_CLS")``, the tuned
  plain path: attention dropout 0, transformers' ``LengthGroupedSampler``, ``DataCollatorWithPadding``;
* ``grft_packed``: gr-ft's ``SequenceModel`` (mean pooling + linear head) + ``apply_adapter``, ``train.packing``'s
  collator and attention (one row per batch, SDPA per sequence, no padding, random batch order);
* ``grft_unpacked`` (``--paths`` to add it): the same gr-ft model on length-grouped padded batches, which isolates
  packing from the difference of heads.

All arms: the ESM-2 8M fixture (``../shared/models/esm2_t6_8M_UR50D``, random weights from its make_weights.py,
published size 6 x 320), DeepLoc 1.0 train proteins cut at 1,000 residues (first and last 500 kept, as the
localization recipe does), batch 16 sequences, LoRA r=8 alpha=16 dropout 0.05 on query/key/value/dense, AdamW
lr 1e-3 (linear decay, 6% warm-up, weight decay 0.01, clip 1.0), seed 0, the same training loop; bf16 autocast only
where gr-ft's precision probe says bf16 is faster on this CPU (``resolve_precision("auto")``), else fp32. After the
same sequences (one pass over the same seeded sample of ``--steps`` x 16 training proteins, so every arm
computes the same lengths), dev accuracy on a fixed seeded sample of the dev split (unpacked batches for every arm).
Reported: sequences/s and real tokens/s over the timed steps (after ``--warmup`` steps), process CPU seconds, the
padded share of the tokens computed, peak RSS, dev accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_RESIDUES = 1000
BATCH = 16
PATHS = ("plain", "grft_packed", "grft_unpacked")
LORA_TARGETS = ["query", "key", "value", "dense"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/localization/deeploc1"))
    parser.add_argument("--fixture", default=str(REPO.parent / "shared/models/esm2_t6_8M_UR50D"))
    parser.add_argument("--work", default="/tmp/gr_ft_packing_bench", help="where the fixture's weights are written")
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps (of 16 sequences) per arm")
    parser.add_argument("--chunk", type=int, default=5, help="steps an arm trains before the other arm's turn")
    parser.add_argument("--warmup", type=int, default=0, help="first steps of each arm not timed (0: every arm times the same sequences)")
    parser.add_argument("--dev-size", type=int, default=400, help="dev proteins scored (a seeded sample)")
    parser.add_argument("--paths", nargs="+", default=["plain", "grft_packed"], choices=PATHS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", help="also write the results as JSON here")
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ----------------------------------------------------------------- inside an arm's process


def load_rows(args, split: str):
    """(cropped sequences, label ids, class names) of a DeepLoc split, the same for every arm."""
    from gr_ft.config import DataConfig
    from gr_ft.data import crop_sequences, load_splits
    from gr_ft.labels import infer_label_spec

    splits = load_splits(DataConfig(path=args.data), "protein", seed=0)
    spec = infer_label_spec(splits["train"].frame["label"])
    frame = splits[split].frame
    # every arm trains on the same seeded sample of steps x 16 proteins (one pass), so both see the same lengths
    size = args.dev_size if split == "dev" else args.steps * BATCH
    if len(frame) > size:
        frame = frame.sample(n=size, random_state=0)
    sequences, _ = crop_sequences(frame["sequence"].tolist(), MAX_RESIDUES, "ends")
    labels = [spec.encode(label, split) for label in frame["label"]]
    return sequences, labels, spec


class Arm:
    """One arm's model, optimiser and batch stream; ``train(n)`` runs n steps, ``accuracy()`` scores dev."""

    def __init__(self, args):
        import torch
        from transformers import get_scheduler

        from gr_ft.tokenization import SequenceTokenizer
        from gr_ft.training import resolve_precision

        torch.manual_seed(0)
        self.args, self.torch = args, torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # both arms on the same device
        self.precision = resolve_precision("auto")
        self.tokenizer = SequenceTokenizer.from_pretrained("protein")  # the ESM-2 alphabet, ids as the checkpoint
        sequences, labels, self.spec = load_rows(args, "train")
        self.rows = [{"input_ids": ids, "labels": label}
                     for ids, label in zip(self.tokenizer.encode(sequences, max_length=MAX_RESIDUES + 2)["input_ids"], labels)]
        self.model = self.build_model().to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
        self.scheduler = get_scheduler("linear", self.optimizer, num_warmup_steps=int(0.06 * args.steps),
                                       num_training_steps=args.steps)
        self.batches = self.batch_stream()
        self.step = 0

    def autocast(self):
        return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16, enabled=self.precision == "bf16")

    def padded_collator(self):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(self.tokenizer.hf)

    def batch_stream(self):
        from transformers.trainer_pt_utils import LengthGroupedSampler

        collate = self.padded_collator()
        epoch = 0
        while True:  # transformers' length grouping, reseeded per epoch
            sampler = LengthGroupedSampler(BATCH, lengths=[len(r["input_ids"]) for r in self.rows],
                                           generator=self.torch.Generator().manual_seed(epoch))
            order = list(sampler)
            for start in range(0, len(order) - BATCH + 1, BATCH):
                yield collate([self.rows[i] for i in order[start : start + BATCH]])
            epoch += 1

    def loss(self, batch):
        return self.model(**batch)["loss"]

    def train(self, steps: int) -> dict:
        torch = self.torch
        self.model.train()
        stats = {"steps": 0, "sequences": 0, "real_tokens": 0, "computed_tokens": 0, "seconds": 0.0, "cpu_s": 0.0}
        for _ in range(steps):
            batch = {key: value.to(self.device) if isinstance(value, torch.Tensor) else value
                     for key, value in next(self.batches).items()}
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter(), time.process_time()
            with self.autocast():
                loss = self.loss(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad()
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            self.step += 1
            if self.step > self.args.warmup:
                stats["steps"] += 1
                stats["sequences"] += len(batch["labels"])
                stats["real_tokens"] += int(batch["attention_mask"].sum())
                stats["computed_tokens"] += batch["input_ids"].numel()
                stats["seconds"] += wall
                stats["cpu_s"] += cpu
            stats["last_loss"] = loss.item()
        return stats

    @staticmethod
    def head_logits(out):
        return out["logits"]

    def accuracy(self) -> float:
        torch = self.torch
        sequences, labels, _ = load_rows(self.args, "dev")
        ids = self.tokenizer.encode(sequences, max_length=MAX_RESIDUES + 2)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        collate, correct = self.padded_collator(), 0
        self.model.eval()
        with torch.inference_mode(), self.autocast():
            for start in range(0, len(order), 32):
                chosen = order[start : start + 32]
                batch = {k: v.to(self.device) for k, v in collate([{"input_ids": ids[i]} for i in chosen]).items()}
                logits = self.head_logits(self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))
                correct += int((logits.argmax(-1).cpu() == torch.tensor([labels[i] for i in chosen])).sum())
        return correct / len(order)


class PlainArm(Arm):
    """transformers + peft, as ESM fine-tuning guides show it, tuned: attention dropout 0, length grouping."""

    def build_model(self):
        from peft import LoraConfig, get_peft_model
        from transformers import EsmForSequenceClassification

        model = EsmForSequenceClassification.from_pretrained(self.args.fixture_dir, num_labels=self.spec.num_labels,
                                                             attention_probs_dropout_prob=0.0,
                                                             attn_implementation="sdpa")
        return get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.05,
                                                target_modules=LORA_TARGETS))

    def loss(self, batch):
        return self.model(**batch).loss

    @staticmethod
    def head_logits(out):
        return out.logits


class GrftArm(Arm):
    """gr-ft's task model and adapter; packed batches when ``packed``."""

    packed = False

    def build_model(self):
        from gr_ft.adapters import apply_adapter
        from gr_ft.config import AdapterConfig, ModelConfig
        from gr_ft.modeling import build_task_model
        from gr_ft.packing import enable_packing

        model, _ = build_task_model(ModelConfig(name_or_path=self.args.fixture_dir, attention_dropout=0.0),
                                    self.tokenizer, self.spec.problem_type, self.spec.num_labels)
        if self.packed:
            enable_packing(model)
        return apply_adapter(model, AdapterConfig(r=8, alpha=16, dropout=0.05, target_modules=LORA_TARGETS))

    def padded_collator(self):
        from gr_ft.data import _collator

        return _collator(self.tokenizer, self.spec.problem_type, pad_to_multiple_of=1)


class PackedArm(GrftArm):
    packed = True

    def batch_stream(self):
        from gr_ft.packing import PackedCollator

        collate = PackedCollator(0, self.spec.problem_type)  # rotary ESM-2: positions from 0
        epoch = 0
        while True:  # a seeded random order per epoch: packing needs no length grouping
            order = self.torch.randperm(len(self.rows), generator=self.torch.Generator().manual_seed(epoch)).tolist()
            for start in range(0, len(order) - BATCH + 1, BATCH):
                yield collate([self.rows[i] for i in order[start : start + BATCH]])
            epoch += 1


ARMS = {"plain": PlainArm, "grft_packed": PackedArm, "grft_unpacked": GrftArm}


def child_main(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    arm = ARMS[args.child](args)
    print(json.dumps({"ready": True, "precision": arm.precision}), flush=True)
    for line in sys.stdin:
        command, _, value = line.strip().partition(" ")
        if command == "train":
            reply = arm.train(int(value))
        elif command == "eval":
            reply = {"dev_accuracy": arm.accuracy()}
        else:
            reply = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        print(json.dumps(reply), flush=True)
        if command == "quit":
            return


# ----------------------------------------------------------------- the parent: alternation and the table


class ArmProcess:
    def __init__(self, args, path: str):
        command = [sys.executable, __file__, "--child", path, "--data", args.data, "--fixture", args.fixture,
                   "--work", args.work, "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--dev-size", str(args.dev_size), "--threads", str(args.threads)]
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(args.threads),
               "PYTHONPATH": str(REPO)}
        self.path = path
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.ready = self.read()

    def read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"arm {self.path} ended early (exit {self.process.wait()})")
        return json.loads(line)

    def ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.read()


def add_stats(total: dict, part: dict) -> None:
    for key, value in part.items():
        if key != "last_loss":
            total[key] = total.get(key, 0) + value
    total["last_loss"] = part["last_loss"]


def run(args) -> dict:
    arms = [ArmProcess(args, path) for path in args.paths]  # set-up (data, model) happens before any timing
    totals = {arm.path: {} for arm in arms}
    for round_index, done in enumerate(range(0, args.steps, args.chunk)):
        steps = min(args.chunk, args.steps - done)
        for arm in arms if round_index % 2 == 0 else arms[::-1]:
            add_stats(totals[arm.path], arm.ask(f"train {steps}"))
        print(f"step {done + steps}/{args.steps}: " + ", ".join(
            f"{p} {t['sequences'] / t['seconds']:.2f} seq/s" for p, t in totals.items() if t.get("seconds")), flush=True)
    results = []
    for arm in arms:
        result = {"path": arm.path, "precision": arm.ready["precision"], **totals[arm.path], **arm.ask("eval")}
        result.update(arm.ask("quit"))
        result["seq_per_s"] = result["sequences"] / result["seconds"]
        result["real_tok_per_s"] = result["real_tokens"] / result["seconds"]
        result["seq_per_cpu_s"] = result["sequences"] / result["cpu_s"]
        result["padding_fraction"] = 1 - result["real_tokens"] / result["computed_tokens"]
        results.append(result)
    return {"results": results}


def print_table(results: list[dict]) -> None:
    base = next(r for r in results if r["path"] == "plain") if any(r["path"] == "plain" for r in results) else results[0]
    print(f"\n{'arm':<15}{'prec':>6}{'seq/s':>8}{'x plain':>9}{'seq/CPU-s':>11}{'x plain':>9}{'real tok/s':>12}"
          f"{'padding':>9}{'peak MB':>9}{'dev acc':>9}")
    for r in results:
        print(f"{r['path']:<15}{r['precision']:>6}{r['seq_per_s']:>8.2f}{r['seq_per_s'] / base['seq_per_s']:>8.2f}x"
              f"{r['seq_per_cpu_s']:>11.2f}{r['seq_per_cpu_s'] / base['seq_per_cpu_s']:>8.2f}x{r['real_tok_per_s']:>12.0f}"
              f"{100 * r['padding_fraction']:>8.1f}%{r['peak_rss_mb']:>9.0f}{r['dev_accuracy']:>9.3f}")


def prepare_fixture(args) -> None:
    target = Path(args.work) / "esm2_t6_8M_UR50D"
    if not (target / "model.safetensors").is_file():
        subprocess.run([sys.executable, str(Path(args.fixture) / "make_weights.py"), str(target)], check=True,
                       env={**os.environ, "PUBLISHED_SIZE": "1"})
    args.fixture_dir = str(target)


def main(argv=None) -> None:
    args = parse_args(argv)
    if not Path(args.data).is_dir() or not Path(args.fixture).is_dir():
        sys.exit(f"error: needs DeepLoc 1.0 ({args.data}) and the ESM-2 fixture ({args.fixture}) from ../shared")
    if args.child:
        args.fixture_dir = str(Path(args.work) / "esm2_t6_8M_UR50D")
        child_main(args)
        return
    prepare_fixture(args)
    started = time.time()
    out = run(args)
    out.update({"command": " ".join(["python", "benchmarks/packing.py", *sys.argv[1:]]), "steps": args.steps,
                "batch": BATCH, "chunk": args.chunk, "warmup": args.warmup, "threads": args.threads,
                "dev_size": args.dev_size, "wall_s": round(time.time() - started, 1),
                "load_average": os.getloadavg()})
    print_table(out["results"])
    if args.output:
        tmp = Path(args.output).with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1) + "\n")
        os.replace(tmp, args.output)


if __name__ == "__main__":
    main()
