"""The errors the gateway answers: OpenAI-style ``{"error": {"message", "type", "param", "code"}}``.

Every refusal is a ``GatewayError`` carrying the HTTP status, a message that says what was wrong
and how to fix it, a machine-readable ``code`` and, for a bad request field, its name
(``param``), so the ``openai`` SDK raises the matching exception (``BadRequestError``,
``NotFoundError``, ``APIStatusError``) with that text.

Example:
    >>> e = GatewayError(404, "The model 'gpt-4o' does not exist", code="model_not_found",
    ...                  param="model")
    >>> e.body()["error"]["code"], e.body()["error"]["type"]
    ('model_not_found', 'invalid_request_error')
"""

from __future__ import annotations

from typing import Any

__all__ = ["GatewayError"]

_TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    502: "upstream_error",
}


class GatewayError(Exception):
    """A refused or failed call, answered with ``status`` and an OpenAI-style JSON body.

    Args:
        status: The HTTP status (400 bad request, 404 unknown session/model/path, 413 body too
            large, 502 the upstream failed, 500 a gateway bug).
        message: What was wrong and how to fix it.
        code: A short machine-readable reason (``"invalid_json"``, ``"model_not_found"`` ...).
        param: The request field at fault, when there is one.
    """

    def __init__(
        self, status: int, message: str, *, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        """The JSON answer: ``{"error": {"message", "type", "param", "code"}}``."""
        kind = _TYPES.get(
            self.status, "server_error" if self.status >= 500 else "invalid_request_error"
        )
        return {
            "error": {
                "message": self.message,
                "type": kind,
                "param": self.param,
                "code": self.code,
            }
        }
