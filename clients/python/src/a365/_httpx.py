"""`A365Auth`, for httpx (see a365.auth)."""

from __future__ import annotations

from typing import AsyncGenerator, Generator, Optional

try:
    import httpx
except ImportError as e:  # pragma: no cover
    raise ImportError("a365.auth.A365Auth needs httpx: pip install 'a365[httpx]'") from e

from . import Duration
from .auth import TokenSource


class A365Auth(httpx.Auth):
    """httpx auth: `Authorization: Bearer <token>` with the current token
    of `profile`, asked of the agent for every request; on a 401 the agent
    refreshes it and the request is sent once more. A request whose body
    is a stream that was not read is not sent again. With an AsyncClient
    the agent is asked from a worker thread."""

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

    def _set(self, request: httpx.Request, token: str) -> None:
        request.headers[self.header] = f"{self.scheme} {token}" if self.scheme else token

    @staticmethod
    def _replayable(request: httpx.Request) -> bool:
        try:
            request.content
        except httpx.RequestNotRead:
            return False
        return True

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sent = self.source.current()
        self._set(request, sent)
        response = yield request
        if response.status_code != 401 or not self._replayable(request):
            return
        fresh = self.source.after_401(sent)
        if fresh is not None:
            self._set(request, fresh)
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        import anyio.to_thread

        sent = await anyio.to_thread.run_sync(self.source.current)
        self._set(request, sent)
        response = yield request
        if response.status_code != 401 or not self._replayable(request):
            return
        fresh = await anyio.to_thread.run_sync(self.source.after_401, sent)
        if fresh is not None:
            self._set(request, fresh)
            yield request
