"""Environments bundled with envkit (``envkit.environments``).

Each module holds one environment. They are registered in gymnasium's registry by ``import
envkit`` through entry-point strings, so a module here is imported only when its env is made.
"""

from typing import Any as _Any

__all__ = ["DatasetEnv", "SandboxedEnv", "register_dataset"]

# Tasks from data (``envkit.environments.dataset``), imported on first use too.
_DATASET_API = ("DatasetEnv", "DatasetRows", "load_rows", "register_dataset", "split_of")


def __getattr__(name: str) -> _Any:
    # ``SandboxedEnv`` (the base class of envs that run code in a sandbox) is public here; it is
    # imported on first use so that ``import envkit.environments`` stays light.
    if name == "SandboxedEnv":
        from envkit.environments._sandboxed import SandboxedEnv

        return SandboxedEnv
    if name in _DATASET_API:
        from envkit.environments import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
