"""``scaffold``: writes a new envkit project from the templates in ``templates/``.

A template is a folder tree under ``templates/<name>/`` (plus ``templates/common/``, shared by
all). A ``.tmpl`` suffix is dropped, a path part ``__package__`` becomes the package name, a
``dot-`` prefix a ``.``, and ``{{placeholder}}`` in a text becomes the value
``ProjectNames.substitutions`` gives.

Example:
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     result = scaffold("word-golf", template="chat", directory=pathlib.Path(tmp) / "wg")
    ...     [p.as_posix() for p in result.files if p.parts[0] == "word_golf"]
    ['word_golf/__init__.py', 'word_golf/env.py', 'word_golf/rewards.py', 'word_golf/tasks.jsonl']
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

from envkit.scaffold.names import ProjectNames

__all__ = ["TEMPLATES", "ScaffoldError", "ScaffoldResult", "scaffold"]

TEMPLATES: dict[str, str] = {
    "chat": "question answering from tasks.jsonl, multi-turn retries (no tools, no sandbox)",
    "tools": "a multi-turn agent with @tool methods over per-episode state, ending with submit",
    "coding": "write a Python function; tests run in a Docker sandbox (needs Docker)",
}
"""The templates ``envkit init --template`` offers, with what each writes."""

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


class ScaffoldError(ValueError):
    """``scaffold`` cannot write the project (unknown template, directory not empty)."""


@dataclass
class ScaffoldResult:
    """What ``scaffold`` wrote.

    Attributes:
        directory: The project folder.
        names: The project's names (package, env id, reward...).
        template: The template used.
        files: The files written, relative to ``directory``.
    """

    directory: Path
    names: ProjectNames
    template: str
    files: list[PurePosixPath] = field(default_factory=list)


def _walk(node: Traversable, prefix: PurePosixPath) -> list[tuple[PurePosixPath, Traversable]]:
    out = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            out.extend(_walk(child, prefix / child.name))
        else:
            out.append((prefix / child.name, child))
    return out


def _target_part(part: str, names: ProjectNames) -> str:
    if part == "__package__":
        return names.package
    return "." + part[4:] if part.startswith("dot-") else part


def _render(text: str, values: dict[str, str], where: str) -> str:
    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:  # a template bug, caught by envkit's tests
            raise KeyError(f"template {where} uses an unknown placeholder {{{{{key}}}}}")
        return values[key]

    return _PLACEHOLDER.sub(sub, text)


def template_files(template: str, names: ProjectNames) -> dict[PurePosixPath, str]:
    """The rendered files of ``template`` (common ones first, the template's own override)."""
    if template not in TEMPLATES:
        raise ScaffoldError(
            f"unknown template {template!r}; choose one of: "
            + ", ".join(f"{k} ({v})" for k, v in TEMPLATES.items())
        )
    root = files("envkit.scaffold").joinpath("templates")
    values = names.substitutions()
    values["template"] = template
    values["about"] = TEMPLATES[template]
    rendered: dict[PurePosixPath, str] = {}
    for part in ("common", template):
        for rel, node in _walk(root.joinpath(part), PurePosixPath()):
            target = PurePosixPath(*(_target_part(p, names) for p in rel.parts))
            if target.suffix == ".tmpl":
                target = target.with_suffix("")
            rendered[target] = _render(node.read_text(encoding="utf-8"), values, f"{part}/{rel}")
    return rendered


def _check_not_importable(package: str) -> None:
    """Refuses a package name that an installed module already has (it would shadow it)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return
    if spec is None or spec.origin in (None, "namespace"):  # a plain folder is no module
        return
    raise ScaffoldError(
        f"a module named {package!r} is already importable here ({spec.origin}); the new "
        "project's package would clash with it. Pick another name"
    )


def scaffold(name: str, *, template: str = "chat", directory: Path | None = None) -> ScaffoldResult:
    """Writes a new installable envkit project.

    Args:
        name: The project's name (see ``ProjectNames.from_name``), e.g. ``"word-golf"``.
        template: One of ``TEMPLATES``.
        directory: Where to write it (default: ``./<name>``). It must not exist or be empty.

    Returns:
        What was written.

    Raises:
        InvalidNameError: ``name`` cannot be a Python package name.
        ScaffoldError: unknown template, ``directory`` is a file or a non-empty folder, or a
            module of the package's name is already installed.
    """
    names = ProjectNames.from_name(name)
    rendered = template_files(template, names)
    directory = Path(directory) if directory is not None else Path.cwd() / name
    if directory.exists() and not directory.is_dir():
        raise ScaffoldError(f"{directory} is a file; pass --dir with a new or empty folder")
    if directory.is_dir() and any(directory.iterdir()):
        raise ScaffoldError(
            f"{directory} already exists and is not empty; pass --dir with a new or empty folder "
            "(envkit init never overwrites files)"
        )
    _check_not_importable(names.package)
    for rel, text in rendered.items():
        path = directory.joinpath(*rel.parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return ScaffoldResult(directory, names, template, sorted(rendered))
