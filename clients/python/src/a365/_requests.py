"""`A365RequestsAuth`, for requests (see a365.auth)."""

from __future__ import annotations

from typing import Any, Optional, Tuple
from urllib.parse import urljoin, urlsplit

try:
    import requests
    from requests.auth import AuthBase
    from requests.cookies import extract_cookies_to_jar
    from requests.utils import requote_uri
except ImportError as e:  # pragma: no cover
    raise ImportError("a365.auth.A365RequestsAuth needs requests: pip install 'a365[requests]'") from e

from . import Duration
from .auth import TokenSource, _checked_scheme

# Marks the copy of a request sent after a 401: its answer is final.
_RETRIED = "_a365_retried"
# A body sent again as it is (none, a string or bytes).
_AS_IS = -1
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _body_start(request: requests.PreparedRequest) -> Optional[int]:
    """Where to rewind the body before sending it again: _AS_IS, the
    position requests found a seekable file at, or None when it cannot be
    sent again (an iterator, once read, is gone)."""
    body: Any = request.body
    if body is None or isinstance(body, (str, bytes, bytearray, memoryview)):
        return _AS_IS
    # Set by requests' prepare_body from body.tell() (an object() when
    # that failed); copies made for redirects keep it.
    start = getattr(request, "_body_position", None)
    seekable = getattr(body, "seekable", None)
    try:
        if callable(seekable) and not seekable():
            return None
    except (OSError, ValueError):
        return None
    if isinstance(start, int) and not isinstance(start, bool) and callable(getattr(body, "seek", None)):
        return start
    return None


def _origin(url: str) -> Tuple[str, Optional[str], Optional[int]]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, parts.port or _DEFAULT_PORTS.get(scheme)


def _leaves_origin(response: requests.Response) -> bool:
    """Whether `response` redirects to another origin (scheme, host or
    port) than its request's, where requests goes next computed as its
    resolve_redirects does; True when in doubt."""
    if not response.is_redirect:
        return False
    try:
        location = response.headers["location"].encode("latin1").decode("utf8")
        sent_to = str(response.request.url)
        if location.startswith("//"):
            location = f"{urlsplit(sent_to).scheme}:{location}"
        if urlsplit(location).netloc:
            target = requote_uri(location)
        else:
            target = urljoin(sent_to, requote_uri(location))
        return _origin(target) != _origin(sent_to)
    except Exception:  # an odd Location: strip the token all the same
        return True


class A365RequestsAuth(AuthBase):
    """requests auth: `Authorization: Bearer <token>` (or `header:
    scheme token`) with the current token of `profile`, asked of the agent
    for every request; on a 401 the agent refreshes it and the request is
    sent once more (the 401 is in the answer's `history`). A body that
    cannot be rewound (an iterator, a pipe) is not sent again: the 401 is
    the answer. The header is dropped from a redirect to another origin,
    whatever its name."""

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
        self.scheme = _checked_scheme(scheme)
        self.header = header

    def _value(self, token: str) -> str:
        return f"{self.scheme} {token}" if self.scheme else token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers[self.header] = self._value(self.source.current())
        # Copied with the request to each redirect, so it sees every answer.
        r.register_hook("response", self._on_response)  # type: ignore[no-untyped-call]
        return r

    def _keep_home(self, response: requests.Response, *requests_: requests.PreparedRequest) -> bool:
        """Drops the token from `requests_` (what requests copies for the
        next hop) when `response` redirects to another origin: requests
        itself drops only `Authorization`, and only for another host."""
        if not _leaves_origin(response):
            return False
        for request in requests_:
            request.headers.pop(self.header, None)
        return True

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        if self._keep_home(response, request):
            return response
        if response.status_code != 401 or getattr(request, _RETRIED, False):
            return response
        if self.header not in request.headers:
            return response  # dropped on a redirect to another host: not ours to add
        start = _body_start(request)
        if start is None:
            return response
        sent = str(request.headers.get(self.header, ""))
        refused = sent[len(self.scheme) + 1 :] if self.scheme else sent
        fresh = self.source.after_401(refused)
        if fresh is None:
            return response
        if start != _AS_IS:
            try:
                request.body.seek(start)  # type: ignore[union-attr]
            except (OSError, ValueError):
                return response
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
        # requests follows a redirect of `answer` with copies of `request`.
        request.headers[self.header] = self._value(fresh)
        self._keep_home(answer, again, request)
        return answer
