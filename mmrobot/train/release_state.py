"""What a release run keeps on disk: the state file a ``--resume`` continues from (which
stages are done, what each recorded, the config it ran with) and the record it ends with,
``release.json`` (see :mod:`mmrobot.train.release`)."""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmrobot.core.errors import ConfigError
from mmrobot.core.machine import machine
from mmrobot.train.release_config import RELEASE_FORMAT_VERSION, ReleaseConfig

__all__ = [
    "RUNNING_FILE",
    "StageClock",
    "interrupted",
    "load_state",
    "new_state",
    "release_record",
    "state_digest",
    "utc_now",
    "write_json",
]

#: In the work folder while a stage runs: the stage and how long it has run, rewritten every
#: few seconds, so that the time of a killed run survives for ``--resume``.
RUNNING_FILE = "release_running.json"


def utc_now() -> str:
    """The time now, UTC, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, doc: object) -> None:
    """Write ``doc`` to ``path`` atomically (a temporary file, then a rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    tmp.replace(path)


class StageClock:
    """Times one stage and keeps its time on disk while it runs.

    A daemon thread rewrites ``path`` (``{"stage", "invocation", "attempt", "seconds",
    "updated"}``) every ``every`` seconds; ``seconds`` counts from ``carried``, the time of the
    interrupted earlier attempts that this one, number ``attempt``, continues (a resumed
    training run). When the stage
    completes the file is removed; when it raises (Ctrl-C) the file keeps its time; when the
    process is killed it keeps the time of the last beat.
    """

    def __init__(
        self,
        path: Path,
        stage: str,
        invocation: int,
        carried: float = 0.0,
        attempt: int = 1,
        every: float = 15.0,
    ) -> None:
        self.path, self.stage, self.invocation = path, stage, invocation
        self.carried, self.attempt, self.every = carried, attempt, every
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="release-clock", daemon=True)

    @property
    def seconds(self) -> float:
        """Seconds of this stage so far, the carried ones included."""
        return self.carried + time.perf_counter() - self._t0

    def _write(self) -> None:
        doc = {
            "stage": self.stage,
            "invocation": self.invocation,
            "attempt": self.attempt,
            "seconds": self.seconds,
        }
        write_json(self.path, {**doc, "updated": utc_now()})

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            self._write()

    def __enter__(self) -> StageClock:
        self._write()
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._stop.set()
        self._thread.join()
        if exc_type is None:
            self.path.unlink(missing_ok=True)
        else:
            self._write()


def interrupted(path: Path, stage: str) -> tuple[float, int]:
    """(seconds, attempts) of the interrupted earlier attempts at ``stage`` (``path``: a
    :class:`StageClock`'s file), or (0, 0) when the file is absent or about another stage."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0.0, 0
    if doc.get("stage") != stage:
        return 0.0, 0
    return float(doc.get("seconds", 0.0)), int(doc.get("attempt", 1))


def state_digest(config_doc: Mapping[str, Any]) -> str:
    """The digest a resumed run compares: the same config, the same digest."""
    return hashlib.sha256(json.dumps(config_doc, sort_keys=True).encode()).hexdigest()


def new_state(config_doc: dict[str, Any], command: str) -> dict[str, Any]:
    """The state of a run that starts from the beginning."""
    return {
        "format_version": RELEASE_FORMAT_VERSION,
        "config_digest": state_digest(config_doc),
        "config": config_doc,
        "command": command,
        "started": utc_now(),
        "stages": {},
    }


#: The config keys a resumed run may change, each with the first stage that reads them: that
#: stage and every later one run again, the earlier ones are kept (a longer training reuses
#: the demonstrations; another evaluation reuses the trained checkpoint). In stage order.
RERUN_FROM: tuple[tuple[str, str], ...] = (
    ("release.train.", "train"),
    ("release.evaluate.", "evaluate"),
)


def load_state(
    path: Path, config_doc: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any] | None, list[str], str | None]:
    """The state in ``path`` (None: there is none), the config keys that changed since, and
    the first stage that must run again because of them (None: no change).

    A run of another config is refused, naming the keys that differ, unless every one of them
    is a key of :data:`RERUN_FROM`: then the record of the first stage that reads them is
    dropped, so that stage and every later one run again. A key the state does not know
    (added to the release config since it was written) is no difference when it has its
    default value in ``defaults`` (the same shape as ``config_doc``): the older run behaved
    as that default."""
    if not path.is_file():
        return None, [], None
    state = json.loads(path.read_text(encoding="utf-8"))
    if state.get("config_digest") == state_digest(config_doc):
        return state, [], None
    old, new = _flat(state.get("config", {})), _flat(config_doc)
    known = _flat(defaults or {})
    changed = [
        k
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k) and not (k not in old and k in known and new.get(k) == known[k])
    ]
    blocking = [k for k in changed if not any(k.startswith(p) for p, _ in RERUN_FROM)]
    if blocking:
        raise ConfigError(
            f"--resume: {path.parent} holds a release run of another config ("
            + "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in blocking[:6])
            + "); run without --resume to start over, or with that config"
        )
    stage = next((st for p, st in RERUN_FROM if any(k.startswith(p) for k in changed)), None)
    if stage is not None:
        state["stages"].pop(stage, None)
    state["config"], state["config_digest"] = dict(config_doc), state_digest(config_doc)
    return state, changed, stage


def release_record(
    config: ReleaseConfig, state: Mapping[str, Any], order: list[str], toy: bool, out: Path
) -> dict[str, Any]:
    """``release.json``: the data, the training, every stage's wall time in ``order``,
    load averages, the machine and the source commit (changes inside ``out``, the release
    folder being written, do not count as uncommitted)."""
    stages = [{"name": n, **state["stages"][n]} for n in order]
    return {
        "format_version": RELEASE_FORMAT_VERSION,
        "version": config.release.version,
        "toy": toy,
        "command": state["command"],
        "config": state["config"],
        "train_config": state["train_config"],
        "mmrobot_version": _mmrobot_version(),
        "source": _source(out),
        "started": state["started"],
        "finished": utc_now(),
        "machine": machine(),
        "data": state["data"],
        "heldout": state["heldout"],
        "training": state["training"],
        "policy": state["policy"],
        "evaluations": state["evaluations"],
        "reliance": state["reliance"],
        "stages": stages,
        "total_s": sum(s["seconds"] for s in stages),
        "budget_min": config.release.budget_min,
    }


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _source(written: Path | None = None) -> dict[str, Any]:
    """The git commit of the working directory and whether it had uncommitted changes to
    tracked files outside ``written`` (the release's own output folder, which the run has
    just rewritten itself)."""
    try:
        git = ["git", "rev-parse", "HEAD", "--show-toplevel"]
        commit, top = subprocess.run(
            git, capture_output=True, text=True, check=True, timeout=10
        ).stdout.splitlines()
        fields = subprocess.run(
            ["git", "status", "--porcelain", "-z", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.split("\0")
    except (OSError, subprocess.SubprocessError, ValueError):
        return {"commit": None, "dirty": None}
    # porcelain v1 with -z: "XY path" per NUL-terminated entry, paths unquoted and relative to
    # the top level; a rename or copy is followed by one more field, its origin (a renamed
    # file's origin changed too)
    changed, i = [], 0
    while i < len(fields) and fields[i]:
        kind, path = fields[i][0], fields[i][3:]
        changed.append(Path(top, path).resolve())
        if kind in "RC":
            i += 1
            if kind == "R":
                changed.append(Path(top, fields[i]).resolve())
        i += 1
    inside = Path(written).resolve() if written is not None else None
    dirty = any(inside is None or not p.is_relative_to(inside) for p in changed)
    return {"commit": commit, "dirty": dirty}


def _mmrobot_version() -> str:
    import mmrobot

    return mmrobot.__version__
