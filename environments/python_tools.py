"""``envkit/PythonTools-v0``: answer questions about generated files with tools in a sandbox.

Each episode draws a task template (statistics of a CSV, the busiest path of a web log, a token
hidden in a directory tree, a file to transform...) and generates its data files from the seed
into the episode's own sandbox. The model gets four tools acting in that sandbox, ``run_python``,
``run_shell``, ``write_file`` and ``read_file``, plus ``submit(answer)``. The episode ends when it
submits (or replies without a tool call: the answer it marks, ``envkit.parsing.extract_answer``,
or else its whole text, is its answer); the reward is 1.0 for a
correct answer (for transform tasks: the file it had to write is right) and 0.0 otherwise. The
step info's ``submitted`` is the model's answer; the task's ``reference`` (copied to
``Trajectory.reference``) is the expected answer (``None`` for transform tasks).

Example:
    >>> import envkit
    >>> env = envkit.make("PythonTools-v0")
    >>> obs, info = env.reset(seed=3)
    >>> [t["function"]["name"] for t in env.unwrapped.tool_schemas]
    ['run_python', 'run_shell', 'write_file', 'read_file', 'submit']
    >>> env.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from envkit.env import Feedback, Task
from envkit.environments._canaries import TOOL_CANARIES, tools_golden
from envkit.environments._sandboxed import SandboxedEnv
from envkit.environments.tool_tasks import TEMPLATES, ToolTask, check_answer
from envkit.parsing import extract_answer
from envkit.sandbox.result import ExecResult
from envkit.sandbox.supervised import SupervisedSandbox
from envkit.tools import ToolBox, tool
from envkit.types import Message

__all__ = ["MAX_ARTIFACT_BYTES", "PythonToolsEnv", "format_exec"]

MAX_ARTIFACT_BYTES = 1 << 20
"""The largest output file a transform task's grader copies out of the sandbox."""

SYSTEM_PROMPT = (
    "You work in a sandboxed Linux machine (Debian, Python 3 with its standard library, no "
    "network). The files of the task are in the working directory /work. Use the tools to "
    "inspect them and compute the answer; do not guess. When you know the answer, call "
    "submit(answer)."
)


def format_exec(result: ExecResult, limit: int = 6000) -> str:
    """A command's result as text for the model: status line, stdout and stderr (cut to fit)."""
    parts = [result.describe()]
    half = limit // 2
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        if text:
            if len(text) > half:
                text = (
                    text[: half // 2]
                    + f"\n[... {len(text) - half} characters cut ...]\n"
                    + text[-half // 2 :]
                )
            parts.append(f"--- {name} ---\n{text.rstrip()}")
    return "\n".join(parts)


class PythonToolsEnv(SandboxedEnv):
    """Use tools in a sandbox to answer a question about generated files.

    Args:
        templates: Names of the templates to draw from (default: all; see
            ``envkit.environments.tool_tasks.TEMPLATES``). ``reset(options={"template": ...})``
            picks one directly.
        max_turns: Assistant turns allowed.
        tool_timeout: Seconds a ``run_python`` / ``run_shell`` command may run.
        system_prompt: Replaces the default system message.
        **options: The sandbox options of ``SandboxedEnv`` (``sandbox``: ``"docker"`` or
            ``"local"``; ``sandbox_config``; ``pool``) and ``render_mode``.
    """

    grader_isolated: ClassVar[bool] = True  # checked on the host; only the artifact leaves
    canaries = TOOL_CANARIES  # known hacks: envkit validate plays them (environments/_canaries.py)

    def golden(self) -> list[Any]:
        """Submits the expected answer, or writes the expected file first (transform tasks)."""
        return tools_golden(self)

    def __init__(
        self,
        *,
        templates: Sequence[str] | None = None,
        max_turns: int = 10,
        tool_timeout: float = 20.0,
        system_prompt: str | None = SYSTEM_PROMPT,
        **options: Any,
    ) -> None:
        names = list(templates) if templates else sorted(TEMPLATES)
        unknown = [n for n in names if n not in TEMPLATES]
        if unknown or not names:
            raise ValueError(
                f"unknown templates {unknown}; choose from: {', '.join(sorted(TEMPLATES))}"
            )
        if not tool_timeout > 0:
            raise ValueError(f"tool_timeout must be positive, got {tool_timeout}")
        self.templates = names
        self.tool_timeout = tool_timeout
        self._submitted: str | None = None
        super().__init__(max_turns=max_turns, system_prompt=system_prompt, **options)
        grace = self.sandbox_config.kill_grace
        self.toolbox = ToolBox(
            [self.run_python, self.run_shell, self.write_file, self.read_file, self.submit],
            timeout=tool_timeout + grace + 10.0,
            max_result_chars=8000,
        )
        from envkit.spaces import AssistantTurn

        self.action_space = AssistantTurn(tool_names=list(self.toolbox.tools))

    # ------------------------------------------------------------------ tools
    @tool
    async def run_python(self, code: str) -> str:
        """Runs a Python 3 program in the sandbox (working directory /work) and returns its exit
        code, stdout and stderr.

        Args:
            code: The program's source code.
        """
        sb = await self.asandbox()
        result = await sb.aexec(["python3", "-"], stdin=code, timeout=self.tool_timeout)
        return format_exec(result)

    @tool
    async def run_shell(self, command: str) -> str:
        """Runs a shell command line with /bin/sh in the sandbox (working directory /work) and
        returns its exit code, stdout and stderr.

        Args:
            command: The command line, e.g. "ls -R data | head".
        """
        sb = await self.asandbox()
        result = await sb.aexec(command, timeout=self.tool_timeout)
        return format_exec(result)

    @tool
    async def write_file(self, path: str, content: str) -> str:
        """Writes a text file in the sandbox, creating parent directories.

        Args:
            path: File path, relative to /work or absolute.
            content: The text to write.
        """
        sb = await self.asandbox()
        await sb.awrite_files({path: content}, timeout=self.tool_timeout)
        return f"Wrote {len(content.encode())} bytes to {path}."

    @tool
    async def read_file(self, path: str) -> str:
        """Reads a text file from the sandbox.

        Args:
            path: File path, relative to /work or absolute.
        """
        sb = await self.asandbox()
        data = await sb.aread_file(path, timeout=self.tool_timeout)
        return data.decode("utf-8", "replace")

    @tool
    async def submit(self, answer: str) -> str:
        """Submits your final answer and ends the episode.

        Args:
            answer: The answer, e.g. "42" or "docs/notes/a.txt" (or "done" for tasks that ask you
                to write a file).
        """
        self._submitted = answer
        return "Answer received."

    # ------------------------------------------------------------------ episode
    @property
    def tool_task(self) -> ToolTask:
        """The current episode's generated task."""
        if self.task is None:
            raise RuntimeError("call reset() first")
        return self.task.answer  # type: ignore[no-any-return]

    def make_task(self, options: dict[str, Any] | None) -> Task:
        if options and "template" in options:
            name = str(options["template"])
            if name not in TEMPLATES:
                raise ValueError(f"unknown template {name!r}; choose from {sorted(TEMPLATES)}")
        else:
            name = self.templates[int(self.np_random.integers(len(self.templates)))]
        t = TEMPLATES[name](self.np_random)
        listing = "\n".join(f"- {p}" for p in sorted(t.files)[:12])
        more = f"\n- ... ({len(t.files) - 12} more)" if len(t.files) > 12 else ""
        prompt = f"{t.question}\n\nFiles in /work:\n{listing}{more}"
        return Task(
            messages=[{"role": "user", "content": prompt}],
            id=f"{name}-{int(self.np_random.integers(1 << 30))}",
            answer=t,
            info={"template": name},
            reference=None if t.kind.startswith("file_") else t.answer,
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        self._submitted = None
        self.sandbox().write_files(self.tool_task.files)
        return obs, info

    def _artifact(self, path: str) -> bytes:
        """Copies the file a transform task asked for out of the agent's sandbox.

        Only its bytes leave: a regular file (the sandbox refuses symlinks, FIFOs and devices),
        at most ``MAX_ARTIFACT_BYTES``. Nothing is run in the sandbox to grade it.
        """
        sb = self.sandbox()
        if isinstance(sb, SupervisedSandbox):  # stops the copy at the limit, in the sandbox
            data = sb.read_file(path, max_bytes=MAX_ARTIFACT_BYTES, timeout=self.tool_timeout)
        else:
            data = sb.read_file(path, timeout=self.tool_timeout)
        if len(data) > MAX_ARTIFACT_BYTES:
            raise OSError(f"it is larger than {MAX_ARTIFACT_BYTES} bytes")
        return data

    def _grade(self, answer: str) -> Feedback:
        # Graded on the host: the expected answer never enters the sandbox, and the only thing
        # taken from the sandbox is the submitted artifact's content (``_artifact``).
        ok, why = check_answer(self.tool_task, answer, self._artifact)
        info = {"correct": ok, "submitted": answer[:200], "template": self.tool_task.template}
        if why:
            info["why"] = why
        return Feedback(reward=float(ok), done=True, info=info)

    def after_tools(self, message: Message, results: list[Message]) -> Feedback:
        if self._submitted is None:
            return Feedback(messages=results)
        feedback = self._grade(self._submitted)
        feedback.messages = results
        return feedback

    def respond(self, message: Message) -> Feedback:
        text = (message.content or "").strip()
        return self._grade(extract_answer(text) or text)
