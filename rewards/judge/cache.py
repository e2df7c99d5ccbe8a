"""``JudgeCache``: valid judge answers on disk, keyed by a hash of the model and the request.

Re-running an evaluation sends no request for a group already judged with the same model,
prompt and parameters. One JSON file per entry, written atomically (safe across processes).

Example:
    >>> import tempfile
    >>> cache = JudgeCache(tempfile.mkdtemp())
    >>> key = cache_key("openai/gpt-4o-mini", [{"role": "user", "content": "hi"}], {})
    >>> cache.get(key) is None
    True
    >>> cache.put(key, {"content": "{}"})
    >>> cache.get(key)["content"]
    '{}'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["JudgeCache", "cache_key", "default_cache_dir"]

_VERSION = 1


def default_cache_dir() -> Path:
    """``$ENVKIT_CACHE_DIR/judge``, else ``$XDG_CACHE_HOME/envkit/judge``, else ``~/.cache/...``."""
    root = os.environ.get("ENVKIT_CACHE_DIR")
    if root:
        return Path(root) / "judge"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "envkit" / "judge"


def cache_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """The SHA-256 of the model, the request's messages and its parameters."""
    payload = json.dumps(
        {"v": _VERSION, "model": model, "messages": messages, "params": params},
        sort_keys=True,
        ensure_ascii=False,
        default=repr,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class JudgeCache:
    """A directory of cached judge answers.

    Args:
        path: The directory (created when needed); default ``default_cache_dir()``.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_dir()

    def _file(self, key: str) -> Path:
        return self.path / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry, or ``None`` (also for an unreadable file, which is then ignored)."""
        try:
            data = json.loads(self._file(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Stores ``entry`` (JSON-serializable) under ``key``, atomically."""
        target = self._file(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f, ensure_ascii=False)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self.path.glob("??/*.json")) if self.path.exists() else 0

    def __repr__(self) -> str:
        return f"JudgeCache({str(self.path)!r})"
