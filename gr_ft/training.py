"""The pieces of an accelerate training loop that every recipe shares.

Recipes read as a story of these helpers: ``build_accelerator`` -> ``build_optimizer`` ->
``train_epoch`` / ``evaluate`` -> ``save_checkpoint`` / ``load_checkpoint`` -> ``keep_best``.

Example:
    >>> accelerator = build_accelerator(TrainConfig(precision="fp32"))
    >>> optimizer, scheduler = build_optimizer(model, TrainConfig(), steps_per_epoch=100)
    >>> model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    >>> train_epoch(model, loader, optimizer, scheduler, accelerator, TrainConfig(), state=state)
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from safetensors.torch import load_file, save_file
from transformers import get_scheduler

from .config import TrainConfig, config_to_dict
from .evaluation import PRIMARY_METRIC, MetricAccumulator, metric_direction
from .modeling import TASK_LOSSES
from .run_state import RUN_CONFIG_FILE, kill_point
from .utils import progress_bar

__all__ = [
    "TrainingState",
    "resolve_precision",
    "bf16_is_faster",
    "cpu_has_bf16",
    "bf16_matmul_speedup",
    "precision_of",
    "build_accelerator",
    "build_optimizer",
    "train_epoch",
    "iterate_keeping_rng",
    "evaluate",
    "save_checkpoint",
    "load_checkpoint",
    "save_trainable_weights",
    "load_trainable_weights",
]

logger = logging.getLogger(__name__)
STATE_FILE = "trainer_state.json"


@dataclass
class TrainingState:
    """Where a run stands; saved beside accelerate's checkpoint as JSON."""

    epoch: int = 0
    """Epochs completed."""
    batches_in_epoch: int = 0
    """Batches of the current epoch already trained (for mid-epoch resume)."""
    global_step: int = 0
    """Optimiser steps taken."""
    real_tokens: int = 0
    """Non-padding tokens trained on by this process (for throughput)."""
    best_metric: Optional[float] = None
    best_epoch: Optional[int] = None
    evals_without_improvement: int = 0
    history: list[dict] = field(default_factory=list)
    epoch_loss_sum: float = 0.0
    """Sum of this process's batch losses so far in the current epoch (a resumed epoch's mean covers all of it)."""
    epoch_loss_batches: int = 0
    """Batches summed in ``epoch_loss_sum``."""


BF16_PROBE_SIZE = 1024
"""Side of the square matmuls timed by :func:`bf16_matmul_speedup` (1024^3: ~20-40 ms per fp32 rep on one core)."""
BF16_SCREEN_SIZE = 256
"""Side of the first, small probe: where bf16 is emulated (no native bf16 instructions) it is already ~100x slower
here, and the full-size bf16 matmuls would take seconds each, so the probe stops at this size when bf16 loses by
more than :data:`BF16_SCREEN_LOSS`."""
BF16_SCREEN_LOSS = 0.25
BF16_MIN_SPEEDUP = 1.1
"""bf16 autocast is chosen on a CPU without AMX only when its probe matmul is at least this much faster than fp32."""


def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    return set(line.partition(":")[2].split())


def cpu_model() -> str:
    """The CPU model name of /proc/cpuinfo, else ``platform.processor()``."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _probe_cache_path() -> Path:
    root = os.environ.get("GR_FT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gr-ft")
    return Path(root) / "bf16_probe.json"


def _time_matmuls(size: int, reps: int) -> tuple[float, float]:
    """Best-of-``reps`` seconds of one ``size``^3 matmul in fp32 and in bf16, reps interleaved (noisy shared CPUs)."""
    import time

    a32, b32 = torch.randn(size, size), torch.randn(size, size)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    best = {"fp32": math.inf, "bf16": math.inf}
    with torch.inference_mode():
        a32 @ b32, a16 @ b16  # warm-up: first calls pick kernels
        for _ in range(reps):
            for name, (a, b) in (("fp32", (a32, b32)), ("bf16", (a16, b16))):
                start = time.perf_counter()
                a @ b
                best[name] = min(best[name], time.perf_counter() - start)
    return best["fp32"], best["bf16"]


def bf16_matmul_speedup(size: int = BF16_PROBE_SIZE, reps: int = 3, refresh: bool = False) -> float:
    """fp32 time / bf16 time of a square matmul on this CPU; measured once, then cached.

    The cache is a small JSON file (``$GR_FT_CACHE_DIR`` or ``~/.cache/gr-ft``/bf16_probe.json) keyed by
    CPU model, torch version and thread count, written atomically.

    Example:
        >>> bf16_matmul_speedup() > 1.0   # True on AMX or fast AVX512-BF16 CPUs  # doctest: +SKIP
    """
    key = f"{cpu_model()} | torch {torch.__version__} | threads {torch.get_num_threads()} | n {size}"
    path = _probe_cache_path()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if not refresh and isinstance(cache.get(key), dict) and "speedup" in cache[key]:
        return float(cache[key]["speedup"])
    fp32_s, bf16_s = _time_matmuls(min(size, BF16_SCREEN_SIZE), 1)
    if fp32_s / bf16_s >= BF16_SCREEN_LOSS and size > BF16_SCREEN_SIZE:
        fp32_s, bf16_s = _time_matmuls(size, reps)
    else:
        size = min(size, BF16_SCREEN_SIZE)
    speedup = fp32_s / bf16_s
    logger.info("bf16 probe on %s: fp32 %.1f ms, bf16 %.1f ms per %d^3 matmul (x%.2f)", key, 1e3 * fp32_s,
                1e3 * bf16_s, size, speedup)
    cache[key] = {"fp32_s": fp32_s, "bf16_s": bf16_s, "speedup": speedup}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as err:  # a read-only home only costs a re-measurement next time
        logger.warning("could not cache the bf16 probe in %s (%s)", path, err)
    return speedup


def cpu_has_bf16() -> bool:
    """True when bf16 autocast pays off on this CPU: AMX (``amx_bf16``), or a bf16 matmul measurably faster
    than fp32 (:func:`bf16_matmul_speedup` >= ``BF16_MIN_SPEEDUP``).

    The ``avx512_bf16`` flag alone is not enough: on some Xeons with it and without AMX a bf16 matmul runs at
    ~0.55x fp32, so the probe decides there.
    """
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return True
    if "avx512_bf16" not in flags and "bf16" not in flags:  # no native bf16 dot product: emulated, slow
        return False
    return bf16_matmul_speedup() >= BF16_MIN_SPEEDUP


def has_accelerator_device() -> bool:
    """True when a GPU-like device (CUDA, ROCm, XPU, MPS...) is present."""
    accel = getattr(torch, "accelerator", None)
    if accel is not None and hasattr(accel, "is_available"):
        return accel.is_available()
    return torch.cuda.is_available()


def bf16_is_faster(device: torch.device | str) -> bool:
    """True where bf16 autocast beats fp32 on ``device``: CUDA with bf16; a CPU with AMX or whose bf16 matmul
    probe wins (:func:`cpu_has_bf16`: measured once per CPU model, torch version and thread count)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    return kind == "cpu" and cpu_has_bf16()


def resolve_precision(precision: str) -> str:
    """Map ``auto`` to bf16 where it is faster (CUDA with bf16, AMX, or a CPU whose bf16 probe wins), else
    fp32 (fp16 on CUDA without bf16); refuse fp16 on CPU with a fallback.

    Example:
        >>> resolve_precision("fp32")
        'fp32'
    """
    cuda = torch.cuda.is_available()
    if precision == "auto":
        if cuda:
            return "bf16" if bf16_is_faster("cuda") else "fp16"
        return "bf16" if bf16_is_faster("cpu") else "fp32"
    if precision == "fp16" and not cuda:
        logger.warning("fp16 autocast needs a GPU; falling back to fp32 on CPU")
        return "fp32"
    return precision


def precision_of(accelerator: Accelerator) -> str:
    """The precision an Accelerator runs at: fp32, bf16 or fp16 (what a run folder records)."""
    mixed = str(getattr(accelerator.mixed_precision, "value", accelerator.mixed_precision))
    return "fp32" if mixed == "no" else mixed


def build_accelerator(cfg: TrainConfig, project_dir: Optional[str] = None, split_batches: bool = True) -> Accelerator:
    """An Accelerator with mixed precision resolved and global batches split across processes.

    ``split_batches=True`` makes ``train.batch_size`` the global batch, so 1 and N processes
    see the same batches in the same order. Batches of varying size (``train.batch_tokens``) cannot be
    split evenly: with ``split_batches=False`` each process takes whole batches in turn.
    """
    precision = resolve_precision(cfg.precision)
    return Accelerator(
        # Without a GPU, accelerate only joins a torchrun process group (gloo) when told it runs on CPU.
        cpu=not has_accelerator_device(),
        mixed_precision="no" if precision == "fp32" else precision,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        dataloader_config=DataLoaderConfiguration(split_batches=split_batches),
        log_with=cfg.tracker,
        project_dir=project_dir,
    )


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, steps_per_epoch: int):
    """AdamW over trainable parameters (no decay on biases and norms) and a linear schedule with warm-up."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    total = total_optimizer_steps(cfg, steps_per_epoch)
    scheduler = get_scheduler(
        "linear", optimizer, num_warmup_steps=int(cfg.warmup_fraction * total), num_training_steps=total
    )
    return optimizer, scheduler


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute the backbone's activations in backward (``train.gradient_checkpointing``), non-reentrant so that
    frozen embeddings under LoRA still pass gradients to the adapter; a backbone without support is an error."""
    backbone = model.backbone
    if not getattr(backbone, "supports_gradient_checkpointing", False):
        raise ValueError(f"train.gradient_checkpointing=true: the {type(backbone).__name__} backbone does not support "
                         f"gradient checkpointing; set it to false (or lower train.batch_size / train.batch_tokens)")
    kwargs = {"use_reentrant": False}
    if hasattr(backbone, "activation_checkpointing_enable"):  # transformers 5 (the old name is deprecated)
        backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def training_done(cfg: TrainConfig, state) -> bool:
    """Whether training has run its course: ``max_steps`` optimiser steps when set (it overrides epochs), else epochs."""
    if cfg.max_steps:
        return state.global_step >= cfg.max_steps
    return state.epoch >= cfg.epochs


def total_optimizer_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum_steps)
    return cfg.max_steps if cfg.max_steps else per_epoch * cfg.epochs


def train_epoch(model, loader, optimizer, scheduler, accelerator: Accelerator, cfg: TrainConfig,
                *, state: TrainingState, on_step=None) -> float:
    """Train one epoch (resuming mid-epoch if ``state.batches_in_epoch`` > 0); returns the mean loss
    over processes.

    ``on_step(state)`` is called after every optimiser step (used for step checkpoints).
    """
    model.train()
    loader.set_epoch(state.epoch)
    skipped = state.batches_in_epoch
    batches = accelerator.skip_first_batches(loader, skipped) if skipped else loader
    progress = progress_bar(batches, total=len(loader), initial=skipped, desc=f"epoch {state.epoch + 1}",
                            enabled=accelerator.is_local_main_process, leave=False)
    total_loss, seen, tokens_at_start = state.epoch_loss_sum, state.epoch_loss_batches, state.real_tokens
    for batch in iterate_keeping_rng(progress):
        with accelerator.accumulate(model):
            loss = model(**batch)["loss"]
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        state.batches_in_epoch += 1
        state.real_tokens += int(batch["attention_mask"].sum())
        total_loss, seen = total_loss + loss.item(), seen + 1
        state.epoch_loss_sum, state.epoch_loss_batches = total_loss, seen
        if accelerator.sync_gradients:
            state.global_step += 1
            if state.global_step % cfg.log_every_steps == 0:
                progress.set_postfix(refresh=False, loss=f"{total_loss / seen:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}",
                                     tok_s=f"{(state.real_tokens - tokens_at_start) / max(progress.format_dict['elapsed'], 1e-9):.0f}")
                accelerator.log({"train/loss": total_loss / seen}, step=state.global_step)
            if on_step is not None:
                on_step(state)
            if cfg.max_steps and state.global_step >= cfg.max_steps:
                break
    state.epoch += 1
    state.batches_in_epoch, state.epoch_loss_sum, state.epoch_loss_batches = 0, 0.0, 0
    # each process saw its share of every batch: average the per-process means
    mean_loss = torch.tensor(total_loss / max(seen, 1), device=accelerator.device)
    return float(accelerator.reduce(mean_loss, reduction="mean"))


def iterate_keeping_rng(iterable):
    """Iterate ``iterable`` (a DataLoader, or a wrapper of one) so that starting it leaves torch's RNG untouched.

    A DataLoader iterator draws its base seed from torch's global generator when it starts (at ``iter`` for a
    torch DataLoader, at the first ``next`` for accelerate's wrappers). A resumed run restores the generator and
    then starts a fresh iterator mid-epoch, so without this the dropout stream after a resume would be one draw
    off the uninterrupted run's.
    """
    with torch.random.fork_rng(devices=[]):
        iterator = iter(iterable)
        first = next(iterator, _END)
    if first is _END:
        return
    yield first
    yield from iterator


_END = object()


@torch.no_grad()
def evaluate(model, loader, accelerator: Accelerator, problem_type: str, num_labels: int,
             desc: str = "eval") -> dict[str, float]:
    """Metrics and unweighted mean loss over a whole split, gathered across processes.

    Only compact per-example scores are kept (see :class:`MetricAccumulator`); the loss is
    recomputed from the gathered outputs so that it does not depend on how batches were split.
    """
    model.eval()
    metrics = MetricAccumulator(problem_type, num_labels)
    loss_sum, loss_count = 0.0, 0
    for batch in progress_bar(loader, desc=desc, enabled=accelerator.is_local_main_process, leave=False):
        with accelerator.autocast():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])["logits"]
        labels = batch["labels"]
        if problem_type == "token_classification":  # lengths differ between processes
            logits = accelerator.pad_across_processes(logits, dim=1)
            labels = accelerator.pad_across_processes(labels, dim=1, pad_index=-100)
        logits, labels = accelerator.gather_for_metrics((logits.float(), labels))
        logits, labels = logits.cpu(), labels.cpu()
        count = int((labels != -100).sum()) if problem_type == "token_classification" else len(labels)
        loss_sum += float(TASK_LOSSES[problem_type](logits, labels, None)) * count
        loss_count += count
        metrics.add_batch(logits, labels)
    result = metrics.compute()
    result["loss"] = loss_sum / max(loss_count, 1)
    return result


def is_improvement(metrics: dict[str, float], problem_type: str, best: Optional[float]) -> bool:
    """Whether dev ``metrics`` beat ``best`` on the task's primary metric (nan never improves)."""
    value = metrics[PRIMARY_METRIC[problem_type]]
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value > best if metric_direction(PRIMARY_METRIC[problem_type]) == "max" else value < best


# ----------------------------------------------------------------- checkpoints


def _atomic_replace_dir(tmp: Path, final: Path, step: Optional[int] = None) -> None:
    """``tmp`` -> ``final``; a kill between the two renames leaves ``final.old`` (complete) for the resume."""
    if final.exists():
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        kill_point("checkpoint_swapping", step)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def save_checkpoint(accelerator: Accelerator, state, folder: Path, state_file: str = STATE_FILE,
                    config: Optional[dict] = None) -> None:
    """accelerate ``save_state`` (model, optimizer, scheduler, RNG) plus a state dataclass as JSON, atomically.

    ``config`` (the flat resolved config, :func:`gr_ft.run_folder.flat_config`) is stored as ``run_config.json`` so a
    resume can refuse a changed config (:func:`gr_ft.run_folder.check_resume_config`).
    """
    step = getattr(state, "global_step", getattr(state, "step", None))
    tmp = folder.with_name(folder.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp), safe_serialization=True)
        accelerator.wait_for_everyone()  # every rank's RNG file is in tmp before the main process moves it
        if accelerator.is_main_process:
            (tmp / state_file).write_text(json.dumps(asdict(state), indent=2))
            if config is not None:
                (tmp / RUN_CONFIG_FILE).write_text(json.dumps(config, indent=2))
            kill_point("checkpoint_staged", step)
    except BaseException:  # full disk, Ctrl-C: drop the half-written last.tmp; the previous checkpoint stays
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if accelerator.is_main_process:
        _atomic_replace_dir(tmp, folder, step)
        kill_point("checkpoint", step)
    accelerator.wait_for_everyone()


def load_checkpoint(accelerator: Accelerator, folder: Path, state_cls: type = TrainingState,
                    state_file: str = STATE_FILE):
    """Restore accelerate state from ``folder`` and return the saved state (a ``state_cls``)."""
    accelerator.load_state(str(folder))
    return state_cls(**json.loads((folder / state_file).read_text()))


def start_training(accelerator: Accelerator, cfg, project: str, resume_from: Optional[Path]) -> TrainingState:
    """Start the trackers (``train.tracker``) and restore the checkpoint being resumed; returns where the run stands.

    ``cfg`` is the recipe's config (logged with the trackers); call after ``accelerator.prepare``.
    """
    if cfg.train.tracker:
        accelerator.init_trackers(project, config=config_to_dict(cfg))
    if resume_from is None:
        return TrainingState()
    state = load_checkpoint(accelerator, resume_from)
    accelerator.print(f"resumed from {resume_from}: epoch {state.epoch}, step {state.global_step}")
    return state


def save_trainable_weights(model: torch.nn.Module, path: Path) -> None:
    """Save only trainable tensors (adapter + head, or everything for full fine-tuning) as safetensors."""
    tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


def load_trainable_weights(model: torch.nn.Module, path: Path) -> None:
    """Load tensors written by :func:`save_trainable_weights`; every trainable tensor must be present."""
    tensors = load_file(str(path))
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in tensors]
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} trainable tensors, e.g. {missing[:3]}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor)
