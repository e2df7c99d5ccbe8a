"""The names a scaffolded project derives from ``envkit init NAME``.

``NAME`` is the distribution name (``pip install NAME``); the import package, the env class, the
env id and the reward name follow from it.

Example:
    >>> n = ProjectNames.from_name("word-golf")
    >>> n.package, n.env_class, n.env_id, n.reward
    ('word_golf', 'WordGolfEnv', 'WordGolf-v0', 'word_golf_correct')
    >>> ProjectNames.from_name("my-env").env_class
    'MyEnv'
"""

from __future__ import annotations

import keyword
import re
import sys
from dataclasses import dataclass

__all__ = ["InvalidNameError", "ProjectNames"]

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_][A-Za-z0-9]+)*$")
# Import names a project must not shadow: its package would hide (or be hidden by) these.
_TAKEN = {"envkit", "gymnasium", "gym", "torch", "transformers", "trl", "peft", "litellm"}
_TAKEN |= {"numpy", "pydantic", "typer", "rich", "docker", "yaml", "pytest", "tests", "test"}
_TAKEN |= {"environments", "rewards", "trainers", "sandbox", "datasets", "setuptools", "pip"}


class InvalidNameError(ValueError):
    """``envkit init`` was given a name it cannot turn into a Python package."""


@dataclass(frozen=True)
class ProjectNames:
    """Every name of a scaffolded project.

    Attributes:
        dist: The distribution name, as given (``pip install`` / ``pip uninstall`` it).
        package: The import package (``word_golf``).
        env_class: The env's class (``WordGolfEnv``).
        env_id: The env id without its namespace (``WordGolf-v0``; registered as
            ``envkit/WordGolf-v0``).
        reward: The registered reward's name (``word_golf_correct``).
        reward_fn: The reward function's name in ``rewards.py``.
    """

    dist: str
    package: str
    env_class: str
    env_id: str
    reward: str
    reward_fn: str

    @classmethod
    def from_name(cls, name: str) -> ProjectNames:
        """Validates ``name`` and derives the other names from it.

        Raises:
            InvalidNameError: the name is not a letter followed by letters and digits, optionally
                in parts joined by ``-`` or ``_``; or its package would shadow a Python keyword,
                a standard-library module or a package envkit needs.
        """
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise InvalidNameError(
                f"invalid project name {name!r}: use a letter followed by letters and digits, "
                "in parts joined by '-' or '_' (e.g. 'word-golf' or 'my_env2'); it becomes the "
                "pip distribution name and, with '-' as '_', the Python package name"
            )
        package = name.lower().replace("-", "_")
        if keyword.iskeyword(package) or package in sys.stdlib_module_names or package in _TAKEN:
            raise InvalidNameError(
                f"invalid project name {name!r}: its package {package!r} would shadow "
                f"{'a Python keyword' if keyword.iskeyword(package) else 'an existing module'}; "
                f"pick a more specific name, e.g. '{name}-env'"
            )
        camel = "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]", name))
        return cls(
            dist=name,
            package=package,
            env_class=camel if camel.endswith("Env") else f"{camel}Env",
            env_id=f"{camel}-v0",
            reward=f"{package}_correct",
            reward_fn="correct",
        )

    def substitutions(self) -> dict[str, str]:
        """The ``{{placeholder}}`` -> value map the templates are rendered with."""
        return {
            "dist": self.dist,
            "package": self.package,
            "env_class": self.env_class,
            "env_id": self.env_id,
            "reward": self.reward,
            "reward_fn": self.reward_fn,
        }
