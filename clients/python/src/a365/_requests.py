"""`A365RequestsAuth`, for requests (see a365.auth)."""

from __future__ import annotations

from typing import Any, Optional

try:
    import requests
    from requests.auth import AuthBase
    from requests.cookies import extract_cookies_to_jar
except ImportError as e:  # pragma: no cover
    raise ImportError("a365.auth.A365RequestsAuth needs requests: pip install 'a365[requests]'") from e

from . import Duration
from .auth import TokenSource

# Marks the copy of a request sent after a 401: its answer is final.
_RETRIED = "_a365_retried"
_BODY_AT = "_a365_body_at"


class A365RequestsAuth(AuthBase):
    """requests auth: `Authorization: Bearer <token>` with the current
    token of `profile`, asked of the agent for every request; on a 401 the
    agent refreshes it and the request is sent once more (the 401 is in
    the answer's `history`). A body that cannot be rewound is not sent
    again."""

    def __init__(
        self,
        profile: Optional[str] = None,
        *,
        min_valid: Optional[Duration] = None,
        workspace: Optional[str] = None,
        scheme: str = "Bearer",
        header: str = "Authorization",
    ) -> None:
        self.source = TokenSource(profile, min_valid, workspace)
        self.scheme = scheme
        self.header = header

    def _value(self, token: str) -> str:
        return f"{self.scheme} {token}" if self.scheme else token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers[self.header] = self._value(self.source.current())
        body_at: Optional[int] = None
        if r.body is not None and hasattr(r.body, "seek"):
            try:
                body_at = r.body.tell()  # type: ignore[union-attr]
            except (AttributeError, OSError):
                body_at = -1  # a stream that cannot be rewound
        setattr(r, _BODY_AT, body_at)
        r.register_hook("response", self._on_response)  # type: ignore[no-untyped-call]
        return r

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        if response.status_code != 401 or getattr(request, _RETRIED, False):
            return response
        if self.header not in request.headers:
            return response  # dropped on a redirect to another host: not ours to add
        body_at = getattr(request, _BODY_AT, None)
        if body_at == -1:
            return response
        sent = str(request.headers.get(self.header, ""))
        refused = sent[len(self.scheme) + 1 :] if self.scheme else sent
        fresh = self.source.after_401(refused)
        if fresh is None:
            return response
        if body_at is not None:
            request.body.seek(body_at)  # type: ignore[union-attr]
        # As requests' own HTTPDigestAuth does: finish the first answer,
        # then send a copy with the new token on the same adapter.
        response.content
        response.close()
        again = request.copy()
        extract_cookies_to_jar(again._cookies, request, response.raw)  # type: ignore[attr-defined,no-untyped-call]
        again.prepare_cookies(again._cookies)  # type: ignore[attr-defined]
        again.headers[self.header] = self._value(fresh)
        setattr(again, _RETRIED, True)
        answer = response.connection.send(again, **kwargs)
        answer.history.append(response)
        answer.request = again
        return answer
