"""Access tokens from a365-agent, over its local socket (standard library only).

    import a365
    token = a365.token("work")              # the current token of profile "work"
    for event in a365.watch("work"):        # "refreshed", "needs-reauth", …
        print(event.profile, event.kind)

`a365.auth` has auth classes for httpx and requests, `a365.keyring_backend`
a backend for the keyring package. See docs/protocol.md for the protocol.
"""

from __future__ import annotations

import datetime
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple, Union

from ._client import (
    DEFAULT_TIMEOUT,
    EXIT_CODES,
    PROTOCOL_VERSION,
    A365Error,
    AgentNotRunning,
    BadRequest,
    Connection,
    InternalError,
    InvalidProfile,
    MissingScope,
    NeedsReauth,
    NotOurAgent,
    PermissionDenied,
    ProtocolError,
    Unavailable,
    UnknownProfile,
    UnusableToken,
    call,
    clean,
    connect,
    error_from,
    expect,
    socket_path,
)

__version__ = "0.1.0"

__all__ = [
    "A365Error",
    "AgentNotRunning",
    "BadRequest",
    "DEFAULT_MIN_VALID",
    "EXIT_CODES",
    "Event",
    "InternalError",
    "InvalidProfile",
    "MissingScope",
    "NeedsReauth",
    "NotOurAgent",
    "PermissionDenied",
    "ProtocolError",
    "Token",
    "Unavailable",
    "UnknownProfile",
    "UnusableToken",
    "Watch",
    "refresh",
    "socket_path",
    "token",
    "token_info",
    "watch",
]

#: What `min_valid=None` asks for: the same as `a365 token` (5 seconds).
DEFAULT_MIN_VALID = datetime.timedelta(seconds=5)
#: Longer asks mean nothing (the agent treats them as a year and a day).
_MAX_MIN_VALID_MS = 366 * 24 * 3600 * 1000

Duration = Union[datetime.timedelta, float, int]


@dataclass(frozen=True)
class Token:
    """An access token and what the agent says about it. The token itself
    is not part of the repr."""

    #: The profile that holds it (for a workspace token, `NAME.ws-ID`).
    profile: str
    #: When it expires (UTC), or None for a token without expiry.
    expires_at: Optional[datetime.datetime]
    scopes: Tuple[str, ...]
    token: str = field(repr=False)


@dataclass(frozen=True)
class Event:
    """Something that happened to a profile: `kind` is `refreshed`,
    `refresh-failed`, `needs-reauth`, `expires-soon`, `removed` or
    `replayed`. Never holds a token: ask for it."""

    profile: str
    kind: str
    #: The token's expiry after the event (UTC), if known.
    expires_at: Optional[datetime.datetime]
    #: For a person: what happened (control characters escaped).
    message: str


def _when(value: Any) -> Optional[datetime.datetime]:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    try:
        return datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _min_valid_ms(min_valid: Optional[Duration]) -> int:
    if min_valid is None:
        min_valid = DEFAULT_MIN_VALID
    if isinstance(min_valid, datetime.timedelta):
        seconds = min_valid.total_seconds()
    elif isinstance(min_valid, (int, float)) and not isinstance(min_valid, bool):
        seconds = float(min_valid)
    else:
        raise TypeError(f"min_valid must be a datetime.timedelta or seconds, not {type(min_valid).__name__}")
    if math.isnan(seconds) or seconds < 0:
        raise ValueError("min_valid must not be negative")
    return min(math.ceil(seconds * 1000), _MAX_MIN_VALID_MS) if math.isfinite(seconds) else _MAX_MIN_VALID_MS


def _profile(profile: Optional[str]) -> Optional[str]:
    # As `a365 token`: the named profile, else $A365_PROFILE, else the
    # agent's default.
    if profile is None:
        return os.environ.get("A365_PROFILE") or None
    if not isinstance(profile, str):
        raise TypeError("profile must be a string")
    return profile


def token_info(
    profile: Optional[str] = None,
    min_valid: Optional[Duration] = None,
    workspace: Optional[str] = None,
    *,
    scopes: Iterable[str] = (),
    timeout: Optional[float] = DEFAULT_TIMEOUT,
) -> Token:
    """The current access token of `profile` and what the agent says about
    it. `profile`: the profile's name, else `$A365_PROFILE`, else the
    agent's default profile. `min_valid` (a timedelta or seconds; 5 s when
    None, as `a365 token`): the token stays valid at least this long, or
    Unavailable is raised (the agent refreshes it first when it can).
    `workspace`: an Altium 365 workspace's token, from a sign-in profile.
    `scopes`: scopes the token must carry (MissingScope otherwise)."""
    request: Dict[str, Any] = {
        "profile": _profile(profile),
        "min_valid_ms": _min_valid_ms(min_valid),
        "scopes": [str(s) for s in scopes],
    }
    version = 1
    if workspace is not None:
        # Version 4 brought `workspace`: an older agent refuses the request
        # instead of ignoring the field and answering another token.
        request["workspace"] = str(workspace)
        version = PROTOCOL_VERSION
    reply = expect(call({"token": request}, version, timeout), "token")
    if not isinstance(reply, dict) or not isinstance(reply.get("token"), str) or not reply["token"]:
        raise ProtocolError("the agent's token answer holds no token")
    raw_scopes = reply.get("scopes")
    return Token(
        profile=str(reply.get("profile", "")),
        expires_at=_when(reply.get("expires_at")),
        scopes=tuple(str(s) for s in raw_scopes) if isinstance(raw_scopes, list) else (),
        token=reply["token"],
    )


def token(
    profile: Optional[str] = None,
    min_valid: Optional[Duration] = None,
    workspace: Optional[str] = None,
    *,
    scopes: Iterable[str] = (),
    timeout: Optional[float] = DEFAULT_TIMEOUT,
) -> str:
    """The current access token of `profile` (see `token_info`). Ask each
    time you need it: the agent answers from memory and keeps it fresh."""
    return token_info(profile, min_valid, workspace, scopes=scopes, timeout=timeout).token


def refresh(profile: Optional[str] = None, *, timeout: Optional[float] = DEFAULT_TIMEOUT) -> str:
    """Makes the agent exchange a new token for `profile` now and wait for
    the outcome (what `a365 refresh` does: an API answered 401). Returns
    the agent's message."""
    done = expect(call({"refresh": {"profile": _profile(profile)}}, 1, timeout), "done")
    return clean(done.get("message", "") if isinstance(done, dict) else "")


class Watch(Iterator[Event]):
    """The events of one profile (or of all), as they happen, from one
    connection: iterate over it; `close()` it (or use it in a `with`) to
    stop. Iteration ends when the agent closes the connection (it
    stopped or restarted): call `a365.watch()` again to go on."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def __iter__(self) -> "Watch":
        return self

    def __next__(self) -> Event:
        if self._conn.closed:
            raise StopIteration
        try:
            response = self._conn.receive()
        except A365Error:
            if self._conn.closed:
                raise StopIteration from None
            self.close()
            raise
        if response is None:
            self.close()
            raise StopIteration
        if isinstance(response, dict) and "error" in response:
            self.close()
            raise error_from(response["error"])
        body = expect(response, "event")
        if not isinstance(body, dict):
            raise ProtocolError("the agent sent an event without a body")
        return Event(
            profile=str(body.get("profile", "")),
            kind=clean(body.get("kind", ""), 40),
            expires_at=_when(body.get("expires_at")),
            message=clean(body.get("message", "")),
        )

    def close(self) -> None:
        """Ends the watch (the agent sees the connection close)."""
        self._conn.close()

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def watch(profile: Optional[str] = None, *, timeout: Optional[float] = DEFAULT_TIMEOUT) -> Watch:
    """Subscribes to the events of `profile` (of every profile when None)
    and returns them as an iterator of `Event`s. Subscribed on return:
    no event after this call is missed. `timeout` bounds the subscription,
    not the wait for events, which has none."""
    conn = connect(timeout)
    try:
        conn.send({"watch": {"profile": profile}})
        response = conn.receive()
        if response is None:
            raise AgentNotRunning(f"the agent at {conn.where} closed the connection without answering")
        if isinstance(response, dict) and "error" in response:
            raise error_from(response["error"])
        expect(response, "done")
        conn.settimeout(None)
    except BaseException:
        conn.close()
        raise
    return Watch(conn)
