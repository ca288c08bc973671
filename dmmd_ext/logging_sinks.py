"""Where the trainers' log records go (TrainConfig/DistillConfig.log_to, --log-to).

RUN_DIR/log.jsonl is always written, as before. 'tensorboard' adds a
torch.utils.tensorboard SummaryWriter in RUN_DIR/tb; 'wandb' an offline
Weights & Biases run in RUN_DIR (WANDB_MODE=offline: nothing leaves the
machine; `wandb sync` uploads it later). Both receive every record's numeric
scalars under its 'step' (nested dicts flattened as 'eval/excess_nll_bits',
lists as 'peak_mem_mb/0', ...). Only rank 0 opens sinks.
"""

from __future__ import annotations

import importlib
import math
import os
from pathlib import Path

__all__ = ["SINKS", "check_log_to", "parse_log_to", "require_sinks", "open_sinks", "Sinks",
           "add_argument"]

SINKS = ("jsonl", "tensorboard", "wandb")
_INSTALL = "pip install 'dmmd_ext[logging]' (or the package alone)"


def parse_log_to(value) -> tuple[str, ...]:
    """'jsonl,tensorboard' or a sequence -> a tuple that always starts with 'jsonl'."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(s).strip() for s in items if str(s).strip()]
    out = ["jsonl"] + [n for n in dict.fromkeys(names) if n != "jsonl"]
    return tuple(out)


def check_log_to(value) -> tuple[str, ...]:
    names = parse_log_to(value)
    bad = [n for n in names if n not in SINKS]
    if bad:
        raise ValueError(f"log_to (--log-to): unknown sink(s) {bad}; expected a comma-separated "
                         f"subset of {SINKS}, got {value!r}")
    return names


def _require(module: str, sink: str):
    """Import the sink's package, or a clear error naming the flag and the fix."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"--log-to {sink}: the '{sink}' package is not installed ({e}); "
                           f"install it with {_INSTALL}, or drop '{sink}' from --log-to") from None


def require_sinks(log_to) -> tuple[str, ...]:
    """Names checked and packages imported, on every rank at the start of a run (so a
    missing package stops all ranks before any collective, not rank 0 alone)."""
    names = check_log_to(log_to)
    for n in names[1:]:
        _require(n, n)
    return names


def _scalars(record: dict, prefix: str = ""):
    """(tag, float) for each finite number in record, nested containers flattened."""
    for k, v in record.items():
        if k == "step" and not prefix:
            continue
        tag = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _scalars(v, tag + "/")
        elif isinstance(v, (list, tuple)):
            yield from _scalars({str(i): x for i, x in enumerate(v)}, tag + "/")
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            yield tag, float(v)


class _TensorBoard:
    def __init__(self, run_dir: Path):
        _require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.w = SummaryWriter(log_dir=str(run_dir / "tb"))

    def write(self, step: int, values: dict) -> None:
        for tag, x in values.items():
            self.w.add_scalar(tag, x, global_step=step)

    def close(self) -> None:
        self.w.close()


class _WandB:
    def __init__(self, run_dir: Path, config: dict, name: str):
        wandb = _require("wandb", "wandb")
        os.environ["WANDB_MODE"] = "offline"  # never the network from a training job
        self.run = wandb.init(dir=str(run_dir), config=config, name=name, mode="offline")

    def write(self, step: int, values: dict) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class Sinks:
    """The extra sinks of a run (empty: jsonl only). log(record) after every
    _log(log.jsonl, record); close() at the end of the run."""

    def __init__(self, sinks: list):
        self.sinks = sinks

    def log(self, record: dict) -> None:
        if not self.sinks or "step" not in record:
            return
        values = dict(_scalars(record))
        for s in self.sinks:
            s.write(int(record["step"]), values)

    def close(self) -> None:
        for s in self.sinks:
            s.close()
        self.sinks = []


def open_sinks(log_to, run_dir, rank: int, config: dict | None = None,
               name: str | None = None) -> Sinks:
    """The sinks named in log_to besides jsonl; none on ranks other than 0."""
    names = require_sinks(log_to)
    if rank != 0:
        return Sinks([])
    run_dir = Path(run_dir)
    out = []
    try:
        for n in names[1:]:
            out.append(_TensorBoard(run_dir) if n == "tensorboard"
                       else _WandB(run_dir, config or {}, name or run_dir.name))
    except BaseException:
        Sinks(out).close()
        raise
    return Sinks(out)


def add_argument(g) -> None:
    g.add_argument("--log-to", default="jsonl",
                   help="comma-separated log sinks: jsonl (always, RUN_DIR/log.jsonl), "
                        "tensorboard (RUN_DIR/tb), wandb (offline, in RUN_DIR)")
