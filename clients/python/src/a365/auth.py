"""Auth classes that put the current token of a profile on every request
and, when the API answers 401, have the agent refresh it and send the
request once more (never more than once, and only when its body can be
sent again):

    import httpx, requests
    from a365.auth import A365Auth, A365RequestsAuth
    httpx.get(url, auth=A365Auth("work"))
    requests.get(url, auth=A365RequestsAuth("work"))

The agent's errors on the first token of a request are raised; an error
while renewing it after a 401 is not: the 401 is the answer. The token
never follows a redirect to another host. httpx and requests are
optional: each class imports its library when it is first used
(`pip install 'a365[httpx]'` or `'a365[requests]'`).
"""

from __future__ import annotations

import re
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from . import A365Error, Duration, InvalidProfile, Token, UnusableToken, token_info
from . import refresh as _refresh
from ._client import clean

if TYPE_CHECKING:
    from ._httpx import A365Auth as A365Auth
    from ._requests import A365RequestsAuth as A365RequestsAuth

# Not in __all__: A365Auth and A365RequestsAuth, imported on first use.
__all__ = ["REFRESH_FLOOR", "TokenSource"]

#: After a 401 made the agent refresh a profile, the next 401 within this
#: many seconds is passed on without another refresh: an API that refuses
#: every token (a missing permission, not an expired token) costs a token
#: request every 10 s at most, not one per call.
REFRESH_FLOOR = 10.0

# What a header may carry of a token (and an auth scheme is): visible
# ASCII, no space. Anything else makes the HTTP library refuse the header
# with its value, the token, in the message.
_VISIBLE = re.compile(r"[!-~]+")


def _usable(info: Token) -> str:
    if not _VISIBLE.fullmatch(info.token):
        raise UnusableToken(
            f"the token of profile {clean(info.profile, 200)!r} cannot be sent in a header: "
            "it holds a character other than visible ASCII"
        )
    return info.token


def _checked_scheme(scheme: str) -> str:
    """`scheme` if it can prefix a token in a header ("" for none)."""
    if scheme and not _VISIBLE.fullmatch(scheme):
        raise ValueError(f"the auth scheme {scheme!r} is not a single word of visible ASCII")
    return scheme


class TokenSource:
    """Tokens of one profile for an auth class: the current one, and after
    a 401 a newer one (or None when there is none to try)."""

    def __init__(
        self,
        profile: Optional[str] = None,
        min_valid: Optional[Duration] = None,
        workspace: Optional[str] = None,
    ) -> None:
        self.profile = profile
        self.min_valid = min_valid
        self.workspace = workspace
        self._lock = threading.Lock()
        self._last_forced = -REFRESH_FLOOR

    def current(self) -> str:
        """The token to send; the agent's errors are raised, and
        UnusableToken for one that cannot go in a header."""
        return _usable(token_info(self.profile, self.min_valid, self.workspace))

    def after_401(self, refused: str) -> Optional[str]:
        """A token to send again instead of `refused`, which the API
        answered 401: the agent's current one if it already changed
        (another request refreshed it), else one from a refresh the agent
        makes now; None when there is no other (a static token, the floor
        above, or an A365Error on the way, such as a refresh the token
        request budget holds back: the 401 stands, nothing is raised)."""
        try:
            return self._renewed(refused)
        except A365Error:
            return None

    def _renewed(self, refused: str) -> Optional[str]:
        info = token_info(self.profile, self.min_valid, self.workspace)
        if info.token != refused:
            return _usable(info)
        with self._lock:
            now = time.monotonic()
            if now - self._last_forced < REFRESH_FLOOR:
                return None
            self._last_forced = now
        try:
            # The profile the token came from: for a workspace, NAME.ws-ID.
            _refresh(info.profile or self.profile)
        except InvalidProfile:
            return None  # a static token: nothing to refresh
        fresh = _usable(token_info(self.profile, self.min_valid, self.workspace))
        return fresh if fresh != refused else None


def __getattr__(name: str) -> Any:
    if name == "A365Auth":
        from ._httpx import A365Auth

        return A365Auth
    if name == "A365RequestsAuth":
        from ._requests import A365RequestsAuth

        return A365RequestsAuth
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
