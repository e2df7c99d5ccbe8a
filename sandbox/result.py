"""``ExecResult``: what a command did inside a sandbox."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ExecResult"]


class ExecResult(BaseModel):
    """The outcome of one command run in a sandbox.

    Example:
        >>> r = ExecResult(exit_code=0, stdout="hi\\n")
        >>> r.ok, r.output
        (True, 'hi\\n')
    """

    model_config = ConfigDict(extra="forbid")

    exit_code: int = Field(
        description="The command's exit status; 128 + N when signal N killed it (137 after a "
        "timeout or an OOM kill), 127 when it could not be started."
    )
    stdout: str = Field(default="", description="Captured stdout (UTF-8, invalid bytes replaced).")
    stderr: str = Field(default="", description="Captured stderr (UTF-8, invalid bytes replaced).")
    timed_out: bool = Field(
        default=False, description="The timeout expired and the tree was killed."
    )
    oom_killed: bool = Field(
        default=False, description="The kernel's OOM killer killed a process during the command."
    )
    output_truncated: bool = Field(
        default=False,
        description="stdout or stderr exceeded the sandbox's output_limit; the middle was cut.",
    )
    duration_s: float = Field(default=0.0, description="Wall-clock seconds the command ran.")
    signal: int | None = Field(default=None, description="The signal that killed the command.")

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0 within its timeout."""
        return self.exit_code == 0 and not self.timed_out

    @property
    def output(self) -> str:
        """stdout followed by stderr."""
        return self.stdout + self.stderr

    def describe(self) -> str:
        """A one-line status for logs and for models: exit code and what went wrong."""
        parts = [f"exit code {self.exit_code}"]
        if self.timed_out:
            parts.append(f"timed out after {self.duration_s:.1f} s and was killed")
        if self.oom_killed:
            parts.append("killed for using too much memory")
        if self.output_truncated:
            parts.append("output truncated")
        return ", ".join(parts)
