"""`A365Auth`, for httpx (see a365.auth)."""

from __future__ import annotations

from typing import AsyncGenerator, Generator, Optional, Tuple

try:
    import httpx
except ImportError as e:  # pragma: no cover
    raise ImportError("a365.auth.A365Auth needs httpx: pip install 'a365[httpx]'") from e

from . import Duration
from .auth import TokenSource, _checked_scheme

# Where a request given a token was sent to, in its extensions: httpx
# copies them to the requests it builds for redirects (`next_request`).
_HOME = "a365_origin"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: httpx.URL) -> Tuple[str, str, Optional[int]]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


class A365Auth(httpx.Auth):
    """httpx auth: `Authorization: Bearer <token>` with the current token
    of `profile`, asked of the agent for every request; on a 401 the agent
    refreshes it and the request is sent once more. A request whose body
    is a stream (an iterator, a file, multipart) is not sent again: the
    401 is the answer. With an AsyncClient the agent is asked from a
    worker thread.

    The token goes in `Authorization` only: httpx follows redirects
    without asking the auth, and drops that header alone from one to
    another origin. A `next_request` to another origin sent with this
    auth (follow_redirects=False) gets no token either."""

    def __init__(
        self,
        profile: Optional[str] = None,
        *,
        min_valid: Optional[Duration] = None,
        workspace: Optional[str] = None,
        scheme: str = "Bearer",
        header: str = "Authorization",
    ) -> None:
        if header.lower() != "authorization":
            raise ValueError(
                "A365Auth sends the token in Authorization only: httpx would send another header "
                "on with a redirect to another host"
            )
        self.source = TokenSource(profile, min_valid, workspace)
        self.scheme = _checked_scheme(scheme)
        self.header = header

    def _away(self, request: httpx.Request) -> bool:
        """Whether `request` is a redirect, built by httpx, of one of ours
        to another origin: it gets no token (and loses the one httpx kept
        from an http to https redirect)."""
        home = request.extensions.get(_HOME)
        if home is not None and home != _origin(request.url):
            request.headers.pop(self.header, None)
            return True
        request.extensions[_HOME] = _origin(request.url)
        return False

    def _set(self, request: httpx.Request, token: str) -> None:
        request.headers[self.header] = f"{self.scheme} {token}" if self.scheme else token

    def _again(self, request: httpx.Request, response: httpx.Response) -> bool:
        """Whether to renew the token and send `request` once more: a 401
        to our token (not from another origin a redirect led to, which
        httpx sent none), for a body held in memory (none, bytes, a form,
        JSON: a ByteStream); another stream may be gone once sent."""
        return (
            response.status_code == 401
            and self.header in response.request.headers
            and isinstance(request.stream, httpx.ByteStream)
        )

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._away(request):
            yield request
            return
        sent = self.source.current()
        self._set(request, sent)
        response = yield request
        if not self._again(request, response):
            return
        fresh = self.source.after_401(sent)
        if fresh is not None:
            self._set(request, fresh)
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        import anyio.to_thread

        if self._away(request):
            yield request
            return
        sent = await anyio.to_thread.run_sync(self.source.current)
        self._set(request, sent)
        response = yield request
        if not self._again(request, response):
            return
        fresh = await anyio.to_thread.run_sync(self.source.after_401, sent)
        if fresh is not None:
            self._set(request, fresh)
            yield request
