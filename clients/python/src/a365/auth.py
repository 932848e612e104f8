"""Auth classes that put the current token of a profile on every request
and, when the API answers 401, have the agent refresh it and send the
request once more (never more than once):

    import httpx, requests
    from a365.auth import A365Auth, A365RequestsAuth
    httpx.get(url, auth=A365Auth("work"))
    requests.get(url, auth=A365RequestsAuth("work"))

httpx and requests are optional: each class imports its library when it
is first used (`pip install 'a365[httpx]'` or `'a365[requests]'`).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from . import Duration, InvalidProfile, token_info
from . import refresh as _refresh

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
        return token_info(self.profile, self.min_valid, self.workspace).token

    def after_401(self, refused: str) -> Optional[str]:
        """A token to send again instead of `refused`, which the API
        answered 401: the agent's current one if it already changed
        (another request refreshed it), else one from a refresh the agent
        makes now; None when there is no other (a static token, or the
        floor above)."""
        info = token_info(self.profile, self.min_valid, self.workspace)
        if info.token != refused:
            return info.token
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
        fresh = token_info(self.profile, self.min_valid, self.workspace).token
        return fresh if fresh != refused else None


def __getattr__(name: str) -> Any:
    if name == "A365Auth":
        from ._httpx import A365Auth

        return A365Auth
    if name == "A365RequestsAuth":
        from ._requests import A365RequestsAuth

        return A365RequestsAuth
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
