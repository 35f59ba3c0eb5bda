"""The install extras (``pip install "mmrobot[robot]"``) and the check that one is present.

The core install runs a robot's drivers, synchronizer, recorder, control loop and an ONNX
policy; each extra adds what one kind of work needs (pyproject.toml lists the same packages,
and ``tests/test_extras.py`` holds the two together). A command that lacks its extra stops
before it starts, with :class:`~mmrobot.core.errors.DependencyNotInstalled` naming the extra
to install (the CLI exits 2). Presence is looked up with :func:`importlib.util.find_spec`,
which imports nothing, so checking for torch costs no torch import.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mmrobot.core.errors import DependencyNotInstalled

__all__ = [
    "CORE",
    "EXTRAS",
    "Extra",
    "Need",
    "extras_for_module",
    "install_hint",
    "is_present",
    "missing_modules",
    "require_extras",
]

#: Import name of each dependency (distribution name -> module).
MODULES: dict[str, str] = {
    "numpy": "numpy",
    "pyserial": "serial",
    "pydantic": "pydantic",
    "mcap": "mcap",
    "mcap-ros2-support": "mcap_ros2",
    "rich": "rich",
    "onnxruntime": "onnxruntime",
    "opencv-python-headless": "cv2",
    "mujoco": "mujoco",
    "matplotlib": "matplotlib",
    "gymnasium": "gymnasium",
    "h5py": "h5py",
    "torch": "torch",
    "safetensors": "safetensors",
    "onnx": "onnx",
    "onnxscript": "onnxscript",
    "open3d": "open3d",
    "tensorboard": "tensorboard",
    "pyarrow": "pyarrow",
    "av": "av",
    "rerun-sdk": "rerun",
}


@dataclass(frozen=True)
class Extra:
    """One install extra: its name, what it is for, and its distributions (pyproject.toml)."""

    name: str
    purpose: str
    distributions: tuple[str, ...]

    @property
    def modules(self) -> tuple[str, ...]:
        return tuple(MODULES[d] for d in self.distributions)


#: The core install (``pip install mmrobot``): every command needs it.
CORE = Extra(
    "core",
    "drivers, synchronizer, recording, control loop, safety layer, ONNX Runtime policies",
    (
        "numpy",
        "pyserial",
        "pydantic",
        "mcap",
        "mcap-ros2-support",
        "rich",
        "onnxruntime",
        "opencv-python-headless",
    ),
)

#: The optional extras, in the order ``mmrobot doctor`` lists them. ``all`` is every one.
EXTRAS: dict[str, Extra] = {
    e.name: e
    for e in (
        Extra(
            "robot",
            "a robot computer: the arm model's kinematics and IK, the loop timing plot",
            ("mujoco", "matplotlib"),
        ),
        Extra(
            "sim",
            "the MuJoCo tabletop: environments, demonstrations, runs and evaluation in sim",
            ("mujoco", "gymnasium", "h5py", "matplotlib"),
        ),
        Extra(
            "train",
            "training, torch checkpoints, ONNX export, run plots",
            ("torch", "safetensors", "h5py", "matplotlib", "onnx", "onnxscript"),
        ),
        Extra(
            "pointcloud",
            "lidar point-cloud filtering (voxel down-sampling, outlier removal)",
            ("open3d",),
        ),
        Extra(
            "tensorboard",
            "TensorBoard event files beside metrics.jsonl in training ([log] tensorboard)",
            ("tensorboard",),
        ),
        Extra(
            "lerobot",
            "mmrobot dataset export --format lerobot (LeRobotDataset v3: parquet and MP4)",
            ("h5py", "pyarrow", "av"),
        ),
        Extra(
            "viz",
            "mmrobot view: recordings, dataset episodes and results in Rerun",
            ("rerun-sdk",),
        ),
    )
}


@dataclass(frozen=True)
class Need:
    """What a command needs: an extra, or only some of its modules (``()``: all of them)."""

    extra: str
    modules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.extra not in EXTRAS:
            raise ValueError(f"unknown extra {self.extra!r}; expected one of {sorted(EXTRAS)}")
        unknown = sorted(set(self.modules) - set(EXTRAS[self.extra].modules))
        if unknown:
            raise ValueError(f"extra {self.extra!r} does not provide {unknown}")

    @property
    def wanted(self) -> tuple[str, ...]:
        return self.modules or EXTRAS[self.extra].modules


def is_present(module: str) -> bool:
    """Whether ``module`` (a top-level import name) can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed package
        return False


def missing_modules(extra: str | Need) -> list[str]:
    """Import names of ``extra`` (``"core"``, an extra's name or a :class:`Need`) that are absent."""
    if isinstance(extra, Need):
        wanted = extra.wanted
    else:
        wanted = CORE.modules if extra == "core" else _extra(extra).modules
    return [m for m in wanted if not is_present(m)]


def extras_for_module(module: str) -> tuple[str, ...]:
    """The extras that install ``module`` (its top-level name counts); ``("core",)`` for a
    core dependency, ``()`` for a module mmrobot does not install."""
    root = module.split(".")[0]
    if root in CORE.modules:
        return ("core",)
    return tuple(name for name, e in EXTRAS.items() if root in e.modules)


def install_hint(extras: Sequence[str]) -> str:
    """The pip command that installs ``extras``, e.g. ``pip install "mmrobot[sim,train]"``."""
    names = [e for e in dict.fromkeys(extras) if e != "core"]
    hint = f'pip install "mmrobot[{",".join(names)}]"' if names else "pip install mmrobot"
    if "train" in names:
        hint += " (install the torch build for your machine first: docs/deploy.md)"
    return hint


def require_extras(needs: Iterable[str | Need], purpose: str) -> None:
    """Raise :class:`DependencyNotInstalled` unless every need is installed.

    Args:
        needs: extra names (every module of the extra) or :class:`Need` s.
        purpose: what needs them, for the message, e.g. ``"mmrobot train"``.

    Raises:
        DependencyNotInstalled: saying which modules are absent and the pip command that
            installs their extras.
    """
    absent: dict[str, list[str]] = {}
    for need in needs:
        need = need if isinstance(need, Need) else Need(need)
        gone = missing_modules(need)
        if gone:
            absent.setdefault(need.extra, [])
            absent[need.extra] += [m for m in gone if m not in absent[need.extra]]
    if not absent:
        return
    which = " and ".join(f'"{e}"' for e in absent)
    plural = "extras" if len(absent) > 1 else "extra"
    modules = ", ".join(dict.fromkeys(m for ms in absent.values() for m in ms))
    raise DependencyNotInstalled(
        f"{purpose} needs the {which} {plural} ({modules} not installed). "
        f"Install: {install_hint(list(absent))}"
    )


def _extra(name: str) -> Extra:
    try:
        return EXTRAS[name]
    except KeyError:
        raise ValueError(
            f"unknown extra {name!r}; expected core or one of {sorted(EXTRAS)}"
        ) from None
