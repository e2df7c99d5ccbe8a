"""``envkit/PythonCoding-v0``: implement a Python function; the code runs in a sandbox.

Each episode draws one of the original tasks of ``envkit.environments.coding_tasks`` (a statement,
a signature, visible examples and hidden tests). The model answers with code in a ```python
block; it is run against the visible examples and the hidden tests in a clean sandbox, and the
process that reports the results is not the one that runs it (expected values stay on the host;
see docs/sandbox.md, "Where grading runs"). If some tests fail, the model sees which visible
examples failed and may try again until ``max_turns``. The episode's reward is the fraction of
hidden tests that its final submission passes: 1.0 (and the episode ends) as soon as all pass.

Example:
    >>> import envkit
    >>> env = envkit.make("PythonCoding-v0", max_turns=2)
    >>> obs, info = env.reset(seed=0)
    >>> info["function"]
    'top_k_frequent'
    >>> env.close()
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Sequence
from functools import cache
from typing import Any, ClassVar

from envkit.env import Feedback, Task
from envkit.environments._canaries import CODING_CANARIES, coding_golden
from envkit.environments._sandboxed import SandboxedEnv
from envkit.environments.coding_tasks import TASKS, CodingTask, get_task
from envkit.parsing import extract_code
from envkit.rewards.verifiable.code import CallResult, CodeTest, run_calls
from envkit.types import Message

__all__ = ["PythonCodingEnv"]

SYSTEM_PROMPT = (
    "You are an expert Python programmer. Answer with the complete implementation of the "
    "requested function in one ```python code block. You may import from the standard library "
    "and define helper functions."
)


@cache
def _scrubber() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that scrub graded sandboxes between submissions (one process-wide pool)."""
    return concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="envkit-grader-scrub")


class PythonCodingEnv(SandboxedEnv):
    """Write a Python function that passes hidden tests; retry after visible-test feedback.

    Args:
        tasks: Ids of the tasks to draw from (default: all). ``reset(options={"task_id": ...})``
            picks one directly.
        max_turns: Submissions allowed.
        test_timeout: Seconds each test call may take.
        total_timeout: Seconds all the test calls of a submission may take together.
        system_prompt: Replaces the default system message.
        **options: The sandbox options of ``SandboxedEnv`` (``sandbox``: ``"docker"`` or
            ``"local"``; ``sandbox_config``; ``pool``) and ``render_mode``.
    """

    canaries = CODING_CANARIES  # known hacks, played by envkit validate (see _canaries.py)
    grader_isolated: ClassVar[bool] = True  # a clean sandbox per submission, a separate reporter
    _graded = False  # a submission ran in this episode's sandbox: scrub it before the next
    _scrub: concurrent.futures.Future[bool] | None = None  # that scrub, under way

    def golden(self) -> list[Any]:
        """The reference solution in a ```python block (``envkit validate``'s golden path)."""
        return coding_golden(self)

    def __init__(
        self,
        *,
        tasks: Sequence[str] | None = None,
        max_turns: int = 3,
        test_timeout: float = 2.0,
        total_timeout: float = 10.0,
        system_prompt: str | None = SYSTEM_PROMPT,
        **options: Any,
    ) -> None:
        super().__init__(max_turns=max_turns, system_prompt=system_prompt, **options)
        self.tasks: list[CodingTask] = [get_task(t) for t in tasks] if tasks else list(TASKS)
        if not self.tasks:
            raise ValueError("tasks is empty; leave it out to use all tasks")
        if not test_timeout > 0 or not total_timeout > 0:
            raise ValueError(
                f"test_timeout and total_timeout must be positive, got {test_timeout}, "
                f"{total_timeout}"
            )
        self.test_timeout = test_timeout
        self.total_timeout = total_timeout

    @property
    def coding_task(self) -> CodingTask:
        """The current episode's task."""
        if self.task is None:
            raise RuntimeError("call reset() first")
        return self.task.answer  # type: ignore[no-any-return]

    def make_task(self, options: dict[str, Any] | None) -> Task:
        if options and "task_id" in options:
            t = get_task(str(options["task_id"]))
        else:
            t = self.tasks[int(self.np_random.integers(len(self.tasks)))]
        examples = "\n".join(f">>> {t.call_text(c)}\n{c.expected!r}" for c in t.examples)
        prompt = (
            f"Implement this Python function.\n\n{t.statement}\n\n```python\n{t.signature}\n"
            f"    ...\n```\n\nExamples:\n{examples}\n\nReply with the complete function in a "
            "```python code block."
        )
        return Task(
            messages=[{"role": "user", "content": prompt}],
            id=t.id,
            answer=t,
            info={"function": t.function, "hidden_tests": len(t.hidden)},
        )

    # ------------------------------------------------------------------ grading
    def run_tests(self, code: str) -> dict[str, Any]:
        """Runs ``code`` against the task's examples and hidden tests in a clean sandbox.

        The sandbox holds nothing but the submission: the first submission of an episode is
        graded in a sandbox fresh from the pool, every later one after that sandbox was scrubbed
        (``Sandbox.reset``: every process of the sandbox user killed, every writable directory
        emptied, what the pool does between episodes), so nothing a submission left behind
        reaches the next one. Inside, ``code_tests``' grader runs the code (``run_calls``): the
        process that reports is not the one that runs the code, the inputs go in one at a time
        (visible examples first), and the expected values stay on the host.

        Returns a dict with ``visible`` and ``hidden`` lists of ``(passed, detail)`` and
        ``load_error`` (or ``None``). Raises ``InfraError`` if the sandbox fails.
        """
        t = self.coding_task
        cases = [*t.examples, *t.hidden]
        tests = [CodeTest(call=t.function, args=c.args, expected=c.expected) for c in cases]
        sb = self._clean_sandbox()
        self._graded = True
        results = run_calls(
            sb,
            code,
            tests,  # visible first: no hidden input reaches the code before those answered
            test_timeout=self.test_timeout,
            total_timeout=self.total_timeout,
            reuse_runner=True,
        )
        first = results[0]  # only the first: a later reload's error may tell a hidden input
        load_error = first.error if first.load_error else None
        outcomes = [_judge(t, c, r, load_error) for c, r in zip(cases, results, strict=True)]
        n_vis = len(t.examples)
        return {"visible": outcomes[:n_vis], "hidden": outcomes[n_vis:], "load_error": load_error}

    def _clean_sandbox(self) -> Any:
        """This episode's sandbox, scrubbed if a submission was already graded in it."""
        sb = self.sandbox()
        if not self._graded:
            return sb
        scrub, self._scrub = self._scrub, None
        try:
            clean = scrub.result() if scrub is not None else sb.reset()
        except Exception:
            clean = False
        if clean:
            return sb
        # Not clean: a dead sandbox raises its own error here; a live but dirty one is replaced.
        sb.exec(["true"], timeout=30.0)
        self.release_sandbox()
        return self.sandbox()

    def _start_scrub(self) -> None:
        """Scrubs the graded sandbox in the background while the policy writes its next
        submission (``_clean_sandbox`` waits for it, or scrubs then if none was started)."""
        if self._graded and self._scrub is None and self._sandbox is not None:
            self._scrub = _scrubber().submit(self._sandbox.reset)

    def release_sandbox(self) -> None:
        scrub, self._scrub = self._scrub, None
        if scrub is not None:  # never hand a sandbox back while it is being scrubbed
            concurrent.futures.wait([scrub])
        self._graded = False
        super().release_sandbox()

    def respond(self, message: Message) -> Feedback:
        t = self.coding_task
        last_turn = self.turn >= self.max_turns
        code = extract_code(message.content)
        if code is None:
            info = {"score": 0.0, "hidden_passed": 0, "visible_passed": 0, "code_found": False}
            text = (
                f"I found no code in your reply. Answer with the complete `{t.function}` "
                "function in a ```python code block."
            )
            return Feedback(reward=0.0, messages=[{"role": "user", "content": text}], info=info)
        graded = self.run_tests(code)
        hidden_ok = sum(ok for ok, _ in graded["hidden"])
        visible_ok = sum(ok for ok, _ in graded["visible"])
        score = hidden_ok / len(graded["hidden"])
        info = {
            "score": score,
            "hidden_passed": hidden_ok,
            "visible_passed": visible_ok,
            "code_found": True,
        }
        solved = hidden_ok == len(graded["hidden"]) and visible_ok == len(graded["visible"])
        if solved or last_turn:
            return Feedback(reward=score, done=solved, info=info)
        self._start_scrub()  # another submission will come: clean the sandbox meanwhile
        return Feedback(
            reward=0.0,
            messages=[{"role": "user", "content": _feedback_text(t, graded, hidden_ok)}],
            info=info,
        )


def _judge(t: CodingTask, case: Any, res: CallResult, load_error: str | None) -> tuple[bool, str]:
    """(passed, what went wrong) of one test, for the feedback."""
    call = t.call_text(case)
    if load_error:
        return False, f"{call}: {load_error}"
    if res.passed:
        return True, ""
    if res.error is not None:
        return False, f"{call} raised {res.error}"
    got = json.dumps(res.value)
    if len(got) > 200:
        got = got[:200] + "..."
    return False, f"{call} returned {got} but expected {case.expected!r}"


def _feedback_text(t: CodingTask, graded: dict[str, Any], hidden_ok: int) -> str:
    if graded["load_error"]:
        return (
            f"Your code could not be run: {graded['load_error']}\nFix it and answer with the "
            f"complete `{t.function}` function in a ```python code block."
        )
    failed = [detail for ok, detail in graded["visible"] if not ok]
    n_hidden = len(graded["hidden"])
    if failed:
        lines = "\n".join(f"- {d}" for d in failed[:5])
        head = f"Your function fails {len(failed)} of {len(graded['visible'])} examples:\n{lines}"
    else:
        head = "Your function passes all the examples"
    return (
        f"{head}\nHidden tests passed: {hidden_ok} of {n_hidden}.\nFix the function and answer "
        "with the complete corrected code in a ```python code block."
    )
