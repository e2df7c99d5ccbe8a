"""Answers of a RULER judge, for scripting ``ScriptedOpenAIServer`` in tests of judges.

``RulerJudge`` shows each trajectory of a group under an id (``<trajectory id="T1">``) and
expects ``{"scores": [{"id", "explanation", "reward_hacking", "score"}, ...]}`` back.
``ruler_responder(score_of)`` reads the trajectories of each request and scores each one with
``score_of(text)``, so the scores follow the trajectories whatever the shuffled order.

Example:
    >>> import json
    >>> json.loads(ruler_answer({"T1": 0.9, "T2": 0.1}, hacking={"T2"}))["scores"][1]
    {'id': 'T2', 'explanation': 'because T2', 'reward_hacking': True, 'score': 0.1}
    >>> trajectory_blocks('<trajectory id="T1">\\nIt is 4.\\n</trajectory>')
    {'T1': 'It is 4.'}
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envkit.testing.openai_server import RecordedRequest, Reply

__all__ = ["ruler_answer", "ruler_responder", "trajectory_blocks"]

_TRAJECTORY = re.compile(r'<trajectory id="(T\d+)">\n(.*?)\n</trajectory>', re.S)


def trajectory_blocks(prompt: str) -> dict[str, str]:
    """The trajectory blocks of a RULER judge prompt, id -> text, in the order shown."""
    return dict(_TRAJECTORY.findall(prompt))


def ruler_answer(scores: Mapping[str, float], hacking: Collection[str] = ()) -> str:
    """A valid judge answer (JSON text) giving ``scores`` (id -> score), in that order.

    Args:
        scores: The score of each trajectory id.
        hacking: The ids flagged ``"reward_hacking": true``.
    """
    entries = [
        {"id": k, "explanation": f"because {k}", "reward_hacking": k in hacking, "score": v}
        for k, v in scores.items()
    ]
    return json.dumps({"scores": entries})


def ruler_responder(
    score_of: Callable[[str], float], **reply_options: object
) -> Callable[[RecordedRequest], Reply]:
    """A responder that scores each trajectory of the judge's prompt with ``score_of(text)``.

    Args:
        score_of: The score of a trajectory, from its text in the prompt.
        **reply_options: Other ``Reply`` fields (``delay_s``, ``prompt_tokens``...).

    Example:
        >>> from envkit.testing import ScriptedOpenAIServer
        >>> server = ScriptedOpenAIServer(responder=ruler_responder(lambda t: float("4" in t)))
    """
    from envkit.testing.openai_server import Reply

    def respond(request: RecordedRequest) -> Reply:
        blocks = trajectory_blocks(request.user_text)
        answer = ruler_answer({tid: score_of(text) for tid, text in blocks.items()})
        return Reply(content=answer, **reply_options)  # type: ignore[arg-type]

    return respond
