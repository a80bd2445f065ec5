"""One exception root whose messages are written for the operator on call.

Every error says what failed, the value and where it came from, and what to do next. The CLI prints
`str(error)`; the traceback is only shown with `--debug`. `reason` is a short stable code used in
`status`, metrics and `--json` output so that scripts never parse prose.
"""

from __future__ import annotations

from agent.util.escape import shown


class AgentError(Exception):
    """Base of every error the agent reports to an operator."""

    exit_code = 1
    default_reason = "error"

    def __init__(self, what: str, *, hint: str = "", where: str = "", reason: str = "") -> None:
        # Parts of a message may come from a server or a feed: no control character of theirs
        # reaches a terminal or a log (agent/util/escape.py); the agent's own line breaks stay.
        what, hint, where = (shown(what, newlines=True), shown(hint, newlines=True),
                             shown(where))
        super().__init__(what)
        self.what = what
        self.hint = hint
        self.where = where
        self.reason = reason or self.default_reason

    def __str__(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.hint:
            text += f"\n  what to do: {self.hint}"
        return text

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.what, "where": self.where, "hint": self.hint}


class UsageError(AgentError):
    """A command line that cannot be carried out as written (exit 2)."""

    exit_code = 2
    default_reason = "usage"


class ConfigError(AgentError):
    """The configuration file is wrong; nothing is changed until it is fixed (exit 2)."""

    exit_code = 2
    default_reason = "config"


class FetchError(AgentError):
    """A feed could not be downloaded; the last good copy stays enforced."""

    default_reason = "fetch"


class VerifyError(AgentError):
    """A feed failed its signature or manifest rules; it is never parsed or enforced.

    `reason` is one of: bad-signature, unknown-key, legacy-signature, malformed-signature,
    malformed-manifest, rollback, replay, expired, future, payload-size, payload-hash,
    payload-missing.
    """

    default_reason = "verify"


class FormatError(AgentError):
    """A payload cannot be read as its declared format at all (not a per-line reject)."""

    default_reason = "format"


class PlanRefused(AgentError):
    """The plan is unsafe (too large a change); it is held until an operator uses --force."""

    default_reason = "plan-held"


class ApplyError(AgentError):
    """The kernel or the resolver refused a change; the previous enforcement is still in place."""

    default_reason = "apply"


class StateError(AgentError):
    """The state directory cannot be read or written."""

    default_reason = "state"
