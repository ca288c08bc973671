"""Resume checks for the `dmmd` commands: rerunning a command in a run directory
continues the run only when the settings that define the run are the same.

settings_diff(old, new, ignore) lists the differences between two nested
config dicts (dotted keys); check_resume(run_dir, settings, ...) raises
ResumeRefused with that list and the ways out (--no-resume starts over,
--force-resume continues anyway), and reports a run that is already finished.
Settings that do not change the trajectory (device, progress bar, logging and
saving intervals, evaluation) are ignored; `steps` may grow (the run continues
to the new total).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

__all__ = ["ResumeRefused", "settings_diff", "check_resume", "record_settings", "start_over", "IGNORED"]

# dotted-key suffixes that never change what a run computes
IGNORED = ("device", "progress", "log_every", "save_every", "eval_every", "eval_batches",
           "eval_samples", "eval_seed")


class ResumeRefused(ValueError):
    pass


def _flat(d, prefix="") -> dict:
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def settings_diff(old: dict, new: dict, ignore: tuple[str, ...] = IGNORED) -> list[str]:
    """'key: old -> new' for every dotted key whose value differs (keys only one side has
    count when the other side's value is not None)."""
    a, b = _flat(old), _flat(new)
    lines = []
    for key in sorted(set(a) | set(b)):
        if key.rsplit(".", 1)[-1] in ignore:
            continue
        va, vb = a.get(key), b.get(key)
        if json.dumps(va, sort_keys=True, default=str) != json.dumps(vb, sort_keys=True, default=str):
            lines.append(f"{key}: {va!r} -> {vb!r}")
    return lines


def check_resume(run_dir: str | Path, settings: dict, steps: int, force: bool = False,
                 what: str = "run") -> str | None:
    """None: nothing to resume or resuming is consistent; 'finished': the checkpoint
    already reached `steps`. Raises ResumeRefused when settings differ from those
    the run directory recorded (run_dir/settings.json) unless force."""
    run_dir = Path(run_dir)
    ck = run_dir / "checkpoint" / "config.json"
    if not ck.is_file():
        return None
    rec = run_dir / "settings.json"
    if rec.is_file() and not force:
        diff = settings_diff(json.loads(rec.read_text()), settings)
        if diff:
            raise ResumeRefused(
                f"{run_dir} holds a {what} made with other settings: " + "; ".join(diff)
                + f". Rerun with the original settings to resume, --no-resume to start over in "
                f"{run_dir} (its checkpoint and log are removed), a new --run-dir, or "
                "--force-resume to continue with the new settings")
    done = int(json.loads(ck.read_text()).get("step", 0))
    return "finished" if done >= steps else None


def record_settings(run_dir: str | Path, settings: dict) -> None:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "settings.json").write_text(json.dumps(settings, indent=2, sort_keys=True,
                                                      default=str))


def start_over(run_dir: str | Path) -> None:
    """--no-resume: remove the checkpoint, the log and the recorded settings."""
    run_dir = Path(run_dir)
    for name in ("checkpoint", "checkpoint.tmp", "checkpoint.old"):
        if (run_dir / name).is_dir():
            shutil.rmtree(run_dir / name)
    for name in ("log.jsonl", "settings.json"):
        if (run_dir / name).is_file():
            (run_dir / name).unlink()
