"""The training loop: AdamW with warm-up and cosine decay, AMP on a GPU, checkpoints and exact resume.

`train(config)` runs in one process or under `torchrun` (gloo on the CPU, NCCL on GPUs); rank 0
logs a startup summary, a progress bar, a periodic line with every loss term, a JSONL file
(`OUT/train.jsonl`, one line per step) and TensorBoard events when `tensorboard` is installed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np
import open_clip
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from farslip import checkpoint
from farslip.config import ConfigError, TrainConfig, dump_config, unused_loss_weights
from farslip.data import RecordStream, ShardError, ViewSettings, make_loader
from farslip.distributed import unwrap, world_info
from farslip.model import build_model, load_weights
from farslip.objectives import Teacher, compute_losses
from farslip.validation import evaluate, validation_stream

logger = logging.getLogger(__name__)

MAX_LOGIT_SCALE = math.log(100.0)


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite."""


@dataclass
class Run:
    """Everything the loop touches; `step` counts optimizer steps, `batch` batches of the epoch."""

    cfg: TrainConfig
    model: nn.Module
    teacher: Teacher
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    stream: RecordStream
    device: torch.device
    autocast: Callable[[], ContextManager]
    total_steps: int
    out_dir: Path
    step: int = 0
    epoch: int = 0
    batch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def train(cfg: TrainConfig, resume: bool = False, stop_after: int | None = None) -> Run:
    """Train with `cfg`, optionally resuming the latest checkpoint of `cfg.train.out_dir`.

    `stop_after` ends the run after that many optimizer steps (counted from step 0) without the
    final checkpoint, as an interrupted job would; the schedule still spans the full run.
    """
    device = init_distributed(cfg.train.device)
    if not resume:
        check_fresh_output(Path(cfg.train.out_dir))
    run = setup(cfg, device)
    if resume:
        restore(run)
        if run.step >= run.total_steps:
            logger.info("the run in %s is already complete at step %d; nothing to resume", run.out_dir, run.step)
            return run
    log_summary(run)
    logs = RankZeroLogs(run.out_dir, enabled=world_info().rank == 0, resumed_step=run.step)
    progress = tqdm(total=run.total_steps, initial=run.step, disable=None if logs.enabled else True, desc="train")

    started, samples = time.perf_counter(), 0
    accum = cfg.optim.accum_steps
    while run.step < run.total_steps and (stop_after is None or run.step < stop_after):
        run.stream.set_position(run.epoch, run.batch)
        pending = []
        for batch in make_loader(run.stream, pin_memory=device.type == "cuda"):
            pending.append(batch)
            if len(pending) < accum:
                continue
            lr, losses = run.scheduler.get_last_lr()[0], train_step(run, pending)
            run.step, run.batch = run.step + 1, run.batch + accum
            samples += sum(len(b["index"]) for b in pending) * world_info().world_size
            pending = []

            elapsed = time.perf_counter() - started
            record = {"step": run.step, "epoch": run.epoch, "lr": lr, "logit_scale": unwrap(run.model).logit_scale.exp().item(), "samples_per_s": samples / max(elapsed, 1e-9), **losses}
            run.history.append(record)
            logs.step(record, periodic=run.step % cfg.train.log_every == 0 or run.step == run.total_steps)
            if run.step % cfg.train.log_every == 0:
                started, samples = time.perf_counter(), 0
            progress.update(1)
            after_step(run, logs)
            if run.step >= run.total_steps or (stop_after is not None and run.step >= stop_after):
                if run.batch >= (len(run.stream) // accum) * accum:
                    run_epoch_suite(run)  # the last step also ended the epoch
                break
        else:
            run_epoch_suite(run)
            run.epoch, run.batch = run.epoch + 1, 0

    progress.close()
    if stop_after is None or run.step < stop_after:
        save(run)
        validate(run, logs)
    logs.close()
    return run


def train_step(run: Run, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Run one optimizer step over `batches` (gradient accumulation) and return the mean loss terms."""
    run.optimizer.zero_grad(set_to_none=True)
    totals: dict[str, float] = {}
    for i, batch in enumerate(batches):
        batch = {key: value.to(run.device, non_blocking=True) for key, value in batch.items()}
        with no_sync(run.model, last=i == len(batches) - 1), run.autocast():
            losses = compute_losses(run.model, run.teacher, batch, run.cfg.objective)
        check_finite(losses, run.step + 1)
        run.scaler.scale(losses["total"] / len(batches)).backward()
        for name, value in losses.items():
            totals[name] = totals.get(name, 0.0) + value.item() / len(batches)

    if run.cfg.optim.grad_clip is not None:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.optim.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()

    core = unwrap(run.model)
    with torch.no_grad():
        core.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
    run.teacher.update(core)
    return totals


def check_finite(losses: dict[str, torch.Tensor], step: int) -> None:
    """Raise NonFiniteLossError naming the step and the first non-finite term."""
    for name, value in losses.items():
        if not torch.isfinite(value).all():
            raise NonFiniteLossError(
                f"loss term {name} is {value.item()} at step {step}; stopping. Lower optim.lr, set "
                "optim.grad_clip, use train.precision=fp32, or resume from the last checkpoint."
            )


def after_step(run: Run, logs: "RankZeroLogs") -> None:
    every = run.cfg.checkpoint.every
    if every and run.step % every == 0 and run.step < run.total_steps:
        save(run)
    every = run.cfg.validation.every
    if every and run.step % every == 0 and run.step < run.total_steps:
        validate(run, logs)


# Setup --------------------------------------------------------------------------------------------


def init_distributed(device_option: str) -> torch.device:
    """Join the torchrun process group when WORLD_SIZE > 1 and return this rank's device."""
    use_cuda = device_option == "cuda" or (device_option == "auto" and torch.cuda.is_available())
    if device_option == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is cuda but no GPU is visible; set train.device=cpu or auto.")

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if not use_cuda:
        return torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def resolve_precision(precision: str, device: torch.device) -> str:
    """Return the precision `auto` stands for on `device`: bf16 on GPUs, fp32 on the CPU."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def make_autocast(precision: str, device: torch.device) -> tuple[Callable[[], ContextManager], bool]:
    """Return the autocast context factory and whether a gradient scaler is needed (fp16)."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext, False
    if device.type != "cuda":
        raise ValueError(f"train.precision={precision} needs a GPU; use fp32 or auto on the CPU.")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return partial(torch.autocast, device_type="cuda", dtype=dtype), precision == "fp16"


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split trainable parameters: no weight decay on gains, biases, the logit scale and 1-D tensors."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        exempt = parameter.ndim < 2 or name.endswith("bias") or "logit_scale" in name or ".ln_" in name or "gain" in name
        (no_decay if exempt else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Return the LR multiplier: linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def setup(cfg: TrainConfig, device: torch.device) -> Run:
    """Build the model, teacher, data, optimizer, schedule and scaler of a fresh run."""
    info = world_info()
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model).to(device)
    seed_everything(cfg.train.seed + info.rank)

    tokenizer = open_clip.get_tokenizer(cfg.model.name, context_length=model.context_length)
    settings = ViewSettings(model.image_size, model.mean, model.std, tokenizer)
    stream = RecordStream(cfg.data, settings, seed=cfg.train.seed, rank=info.rank, world_size=info.world_size)
    steps_per_epoch = len(stream) // cfg.optim.accum_steps
    if steps_per_epoch == 0:
        raise ValueError(
            f"an epoch has {len(stream)} batches per rank, fewer than optim.accum_steps={cfg.optim.accum_steps}; "
            "lower optim.accum_steps or data.batch_size."
        )
    total_steps = steps_per_epoch * cfg.train.epochs
    if cfg.train.max_steps is not None:
        total_steps = min(total_steps, cfg.train.max_steps)

    teacher = Teacher(model, cfg.objective.teacher, cfg.objective.ema_momentum)
    opt = cfg.optim
    optimizer = torch.optim.AdamW(param_groups(model, opt.weight_decay), lr=opt.lr, betas=opt.betas, eps=opt.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(lr_factor, warmup=opt.warmup_steps, total=total_steps))
    autocast, needs_scaler = make_autocast(cfg.train.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=needs_scaler)
    if info.world_size > 1:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    out_dir = Path(cfg.train.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return Run(cfg, model, teacher, optimizer, scheduler, scaler, stream, device, autocast, total_steps, out_dir)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def no_sync(model: nn.Module, last: bool) -> ContextManager:
    """Skip DDP's gradient all-reduce on all but the last accumulated batch."""
    if isinstance(model, DistributedDataParallel) and not last:
        return model.no_sync()
    return contextlib.nullcontext()


# Checkpoints ----------------------------------------------------------------------------------------


def save(run: Run) -> None:
    """Write a checkpoint on rank 0; every rank waits for it."""
    if world_info().rank == 0:
        state = {
            "step": run.step,
            "position": {"epoch": run.epoch, "batch": run.batch},
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
            "teacher": run.teacher.state_dict(),
            # NOTE: only rank 0's RNG states are stored, and every rank gets them back on resume.
            # Training draws no random numbers per rank unless the model uses dropout.
            "rng": checkpoint.rng_state(),
        }
        checkpoint.save_checkpoint(run.out_dir, run.step, unwrap(run.model), state, dump_config(run.cfg), run.cfg.checkpoint.keep)
    if dist.is_initialized():
        dist.barrier()


# Settings that may change between an interrupted run and its resumption without changing the losses.
RESUMABLE_CHANGES = ("train.out_dir", "train.log_every", "train.device", "data.path", "data.num_workers", "checkpoint.", "validation.")


def check_resumable(saved_yaml: str, cfg: TrainConfig, path: Path) -> None:
    """Raise ConfigError when `cfg` differs from the checkpoint's settings in a way that breaks exact resume."""
    saved = _flatten(yaml.safe_load(saved_yaml) or {})
    current = _flatten(yaml.safe_load(dump_config(cfg)) or {})
    changed = [
        f"{key}: {saved.get(key)!r} in the checkpoint, {current.get(key)!r} now"
        for key in sorted(saved.keys() | current.keys())
        if saved.get(key) != current.get(key) and not key.startswith(RESUMABLE_CHANGES)
    ]
    if changed:
        raise ConfigError(
            f"--resume would continue {path} with other settings, so it would not continue exactly: "
            + "; ".join(changed)
            + ". Resume with the checkpoint's settings (its config.yaml), or start a new run in another --out folder."
        )


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_fresh_output(out_dir: Path) -> None:
    """Raise FileExistsError when a run without --resume would mix with checkpoints already in `out_dir`."""
    newest = checkpoint.latest_checkpoint(out_dir)
    if newest is not None:
        raise FileExistsError(
            f"{out_dir} already contains checkpoints (newest: {newest.name}); pass --resume to continue that run, "
            "or choose an empty --out folder"
        )


def restore(run: Run) -> None:
    """Load the latest checkpoint of the run's output folder into `run`."""
    path = checkpoint.latest_checkpoint(run.out_dir)
    if path is None:
        raise FileNotFoundError(f"--resume found no checkpoint in {checkpoint.checkpoint_dir(run.out_dir)}; run without --resume to start fresh.")
    config_file = path / checkpoint.CONFIG_FILE
    if config_file.is_file():
        check_resumable(config_file.read_text(encoding="utf-8"), run.cfg, path)
    state = checkpoint.load_state(path)
    load_weights(unwrap(run.model), path / checkpoint.WEIGHTS_FILE)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    run.teacher.load_state_dict(state["teacher"])
    checkpoint.set_rng_state(state["rng"])
    run.step = state["step"]
    run.epoch, run.batch = state["position"]["epoch"], state["position"]["batch"]
    logger.info("resumed from %s at step %d (epoch %d, batch %d)", path, run.step, run.epoch, run.batch)


# Validation and logging ---------------------------------------------------------------------------


def validate(run: Run, logs: "RankZeroLogs") -> dict[str, float]:
    """Evaluate on the held-out split on rank 0 and log the metrics; other ranks wait."""
    metrics: dict[str, float] = {}
    cfg = run.cfg.validation
    if cfg.enabled and world_info().rank == 0:
        try:
            stream = validation_stream(run.cfg.data, run.stream.settings, cfg.split, cfg.path, run.cfg.train.seed)
        except ShardError as error:
            logger.warning("validation skipped: %s", error)
        else:
            metrics = evaluate(unwrap(run.model), stream, run.device, run.autocast, cfg.max_batches)
            logs.validation(run.step, metrics)
    if dist.is_initialized():
        dist.barrier()
    return metrics


def run_epoch_suite(run: Run) -> None:
    """Run the evaluation suite file of `validation.suite` on rank 0 after an epoch; other ranks wait."""
    suite_file = run.cfg.validation.suite
    if suite_file and world_info().rank == 0:
        from farslip.evaluate.suite import evaluate_suite

        out_dir = run.out_dir / "eval" / f"epoch-{run.epoch:04d}"
        results = evaluate_suite(unwrap(run.model), suite_file, out_dir, device=run.device)
        logger.info("evaluation suite after epoch %d: %d tasks, results in %s", run.epoch, len(results), out_dir)
    if suite_file and dist.is_initialized():
        dist.barrier()


def log_summary(run: Run) -> None:
    """Log the once-per-run facts on rank 0."""
    info = world_info()
    if info.rank != 0:
        return
    for message in unused_loss_weights(run.cfg):
        logger.warning("%s", message)
    cfg, stream = run.cfg, run.stream
    layout = stream.layout
    trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    logger.info(
        "training %s on %s: %d shards, %d blocks, %d rows (%d used per epoch, the rest of each epoch dropped for equal steps)",
        cfg.model.name, cfg.data.path, len(stream.reader.files), len(stream.block_rows), stream.num_rows, layout.rows_per_epoch,
    )
    logger.info(
        "%d ranks x %d workers, batch %d per rank x %d accumulation = global batch %d; steps: %d per epoch, %d in total (from step %d)",
        info.world_size, layout.workers, cfg.data.batch_size, cfg.optim.accum_steps,
        cfg.data.batch_size * info.world_size * cfg.optim.accum_steps, len(stream) // cfg.optim.accum_steps, run.total_steps, run.step,
    )
    precision = resolve_precision(cfg.train.precision, run.device)
    logger.info("device %s, precision %s, %.2fM trainable parameters, output %s", run.device, precision, trainable / 1e6, run.out_dir)
    if cfg.objective.w_region > 0 and cfg.data.max_regions == 0:
        logger.warning("objective.w_region is %s but data.max_regions is 0, so no region loss is computed", cfg.objective.w_region)
    if cfg.objective.w_distill > 0 and cfg.data.local_views == 0:
        logger.warning("objective.w_distill is %s but data.local_views is 0, so no distillation loss is computed", cfg.objective.w_distill)


class RankZeroLogs:
    """The JSONL file, TensorBoard events and periodic log lines, written on rank 0 only.

    On resume, JSONL lines of steps after the resumed step (from the interrupted run) are removed, so
    the file contains each step once.
    """

    def __init__(self, out_dir: Path, enabled: bool, resumed_step: int):
        self.enabled = enabled
        self.path = out_dir / "train.jsonl"
        self.writer = None
        if not enabled:
            return
        kept = []
        if resumed_step and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                entry = json.loads(line)
                if entry.get("step", 0) <= resumed_step:
                    kept.append(line + "\n")
        self.path.write_text("".join(kept), encoding="utf-8")
        self.file = self.path.open("a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.info("tensorboard is not installed; writing %s only", self.path)
        else:
            # On resume, events after the checkpoint's step came from the interrupted run and are purged.
            purge_step = resumed_step + 1 if resumed_step else None
            self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=purge_step)

    def step(self, record: dict[str, Any], periodic: bool) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("step", "epoch"):
                    self.writer.add_scalar(f"train/{key}", value, record["step"])
        if periodic:
            terms = " ".join(f"{k} {v:.4f}" for k, v in record.items() if k.endswith("loss") or k == "total")
            logger.info(
                "step %d epoch %d | %.1f samples/s | lr %.3g | logit scale %.2f | %s",
                record["step"], record["epoch"], record["samples_per_s"], record["lr"], record["logit_scale"], terms,
            )

    def validation(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"step": step, "validation": metrics}) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(f"validation/{key}", value, step)
        logger.info("validation at step %d: %s", step, " ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.writer is not None:
                self.writer.close()
