"""A run folder's record of its configuration, so that runs are never silently mixed.

The first run of a folder writes ``run.json`` (its whole configuration) and
``flags.txt`` (the same as a flagfile for ``recipes/train.py``); later runs
of the folder resume it only with the same training configuration. Fields
that change how a run goes but not what it trains (where the data are, how
often to validate or checkpoint, what to do at the end) may change freely.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from kseg.utils.io import write_atomic

RECORD = "run.json"
FLAGS_FILE = "flags.txt"
# Fields a resumed run may change: they do not change the weights training produces.
FREE_FIELDS = frozenset({
    "run_dir", "dataset_dir", "predict", "export", "dry_run", "stop_after_steps", "val_every", "val_batch_size",
    "max_val_images", "checkpoint_steps", "jit_compile", "cpu_devices", "strategy", "deterministic",
    "allow_changes",
})  # fmt: skip


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def changed_fields(run_dir: Path, config) -> list[str]:
    """The recorded fields that ``config`` changes, as ``--flag=old (now new)``; empty for a new folder."""
    path = Path(run_dir) / RECORD
    if not path.is_file():
        return []
    try:
        recorded = json.loads(path.read_text())["config"]
    except (ValueError, KeyError) as error:
        raise ValueError(f"{path} is not a kseg run record ({error}); use another --run-dir") from None
    now = config.to_dict()
    return [
        f"{flag(name)}={recorded.get(name)!r} (now {now[name]!r})"
        for name in now
        if name not in FREE_FIELDS and recorded.get(name) != now[name]
    ]


def write_record(run_dir: Path, config, flags_text: str) -> None:
    """Record the first run's configuration; a later run with accepted changes gets a flags file of its own."""
    run_dir = Path(run_dir)
    header = f"# recipes/train.py flags of this run ({time.strftime('%Y-%m-%d %H:%M:%S')}); reuse with --flagfile\n"
    record = run_dir / RECORD
    if not record.is_file():
        payload = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": config.to_dict()}
        write_atomic(record, json.dumps(payload, indent=2) + "\n")
        write_atomic(run_dir / FLAGS_FILE, header + flags_text)
        return
    if changed_fields(run_dir, config):
        count = len(list(run_dir.glob("flags.changed-*.txt"))) + 1
        write_atomic(run_dir / f"flags.changed-{count}.txt", header + flags_text)
