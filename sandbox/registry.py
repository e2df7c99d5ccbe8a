"""The one place sandbox backends are chosen: a name -> factory registry.

Built in: ``"docker"`` (``DockerSandbox``) and ``"local"`` (``LocalSandbox``, bubblewrap). Other
packages add backends with ``register_backend`` or, without being imported first, through the
``envkit.sandboxes`` entry-point group (``name = "package.module:Factory"``). Pools, the
sandboxed environments and the CLI all resolve names here.

Example:
    >>> from envkit.sandbox.registry import backend_names
    >>> backend_names()[:2]
    ['docker', 'local']
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from importlib import metadata

from envkit.sandbox.base import Sandbox
from envkit.sandbox.config import SandboxConfig

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendFactory",
    "backend_names",
    "check_backend",
    "get_backend",
    "make_sandbox",
    "register_backend",
]

ENTRY_POINT_GROUP = "envkit.sandboxes"
BackendFactory = Callable[[SandboxConfig], Sandbox]
"""Makes one sandbox from a ``SandboxConfig`` (a backend class is one)."""

_BUILTIN = {
    "docker": "envkit.sandbox.docker_sandbox:DockerSandbox",
    "local": "envkit.sandbox.local_sandbox:LocalSandbox",
}
_DESCRIPTIONS = {"docker": "hardened containers", "local": "bubblewrap, no Docker daemon needed"}
_REGISTERED: dict[str, BackendFactory] = {}
_LOCK = threading.Lock()


def _load(target: str) -> BackendFactory:
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def register_backend(name: str, factory: BackendFactory, *, replace: bool = False) -> None:
    """Registers a backend under ``name``.

    Args:
        name: What users pass as ``backend=`` / ``sandbox=``.
        factory: ``factory(config) -> Sandbox``.
        replace: Allow replacing a registered (or built-in) backend of that name.

    Raises:
        ValueError: the name is taken and ``replace`` is false, or it is not a simple name.
    """
    if not isinstance(name, str) or not name.replace("-", "_").isidentifier():
        raise ValueError(f"backend names are simple identifiers like 'gvisor', got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable (config) -> Sandbox, got {factory!r}")
    with _LOCK:
        if not replace and (name in _REGISTERED or name in _BUILTIN):
            raise ValueError(f"a sandbox backend named {name!r} exists; pass replace=True")
        _REGISTERED[name] = factory


def backend_names() -> list[str]:
    """Every backend name: built-in first, then registered, then entry points."""
    with _LOCK:
        names = [*_BUILTIN, *(n for n in _REGISTERED if n not in _BUILTIN)]
    names += sorted(n for n in _entry_points() if n not in names)
    return names


def check_backend(name: str) -> str:
    """Returns ``name`` if a backend has it.

    Raises:
        ValueError: no backend has that name (the message lists those that exist).
    """
    if isinstance(name, str) and name in backend_names():
        return name
    choices = ", ".join(
        f"{n!r} ({_DESCRIPTIONS[n]})" if n in _DESCRIPTIONS else repr(n) for n in backend_names()
    )
    raise ValueError(
        f"unknown sandbox backend {name!r}: use one of {choices}; register others with "
        f"envkit.sandbox.registry.register_backend or the {ENTRY_POINT_GROUP!r} entry-point group"
    )


def get_backend(name: str) -> BackendFactory:
    """The factory of backend ``name`` (imported on first use).

    Raises:
        ValueError: no backend has that name.
    """
    with _LOCK:
        factory = _REGISTERED.get(name)
    if factory is not None:
        return factory
    if name in _BUILTIN:
        return _load(_BUILTIN[name])
    ep = _entry_points().get(name)
    if ep is None:
        check_backend(name)  # raises with the list of names
    return ep.load()  # type: ignore[union-attr,no-any-return]


def make_sandbox(backend: str = "docker", config: SandboxConfig | None = None) -> Sandbox:
    """Creates one sandbox of the named backend."""
    return get_backend(backend)(config if config is not None else SandboxConfig())
