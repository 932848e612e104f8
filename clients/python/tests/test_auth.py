"""The httpx and requests auth classes against a loopback API that answers
401 to the first request (or to every request)."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, List, Optional

import httpx
import pytest
import requests

import a365
import a365.auth
from a365.auth import A365Auth, A365RequestsAuth
from conftest import World, fp


class Api:
    """A loopback API: 401 for the first request (mode "once") or every
    request (mode "always"), else 200. Records each request's token's
    fingerprint and body."""

    def __init__(self) -> None:
        self.mode = "once"
        self.seen: List[str] = []
        self.bodies: List[bytes] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                api.bodies.append(self.rfile.read(length) if length else b"")
                header = self.headers.get("Authorization") or ""
                token: Optional[str] = header[len("Bearer ") :] if header.startswith("Bearer ") else None
                api.seen.append(fp(token))
                refuse = api.mode == "always" or (api.mode == "once" and len(api.seen) == 1)
                body = b"no\n" if refuse else b"ok\n"
                self.send_response(401 if refuse else 200)
                if refuse:
                    self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _get(url: str, auth: A365RequestsAuth) -> requests.Response:
    """A GET that ignores proxy settings of the environment."""
    with requests.Session() as session:
        session.trust_env = False
        return session.get(url, auth=auth, timeout=60)


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api()
    yield server
    server.close()


def test_requests_auth_retries_once_with_a_new_token(agent: World, api: Api) -> None:
    with requests.Session() as session:
        session.trust_env = False
        response = session.post(api.url, data=b"payload", auth=A365RequestsAuth("demo"), timeout=60)
    assert response.status_code == 200
    assert len(api.seen) == 2, api.seen
    assert api.seen[0] != api.seen[1], "the request was sent again with the same token"
    assert api.bodies == [b"payload", b"payload"]
    assert [r.status_code for r in response.history] == [401]


def test_requests_auth_passes_a_second_401_on(agent: World, api: Api) -> None:
    api.mode = "always"
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(api.url, auth=A365RequestsAuth("demo"), timeout=60)
    assert response.status_code == 401
    assert len(api.seen) == 2, api.seen
    assert api.seen[0] != api.seen[1]


def test_a_401_soon_after_one_forces_no_second_refresh(agent: World, api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # An API that refuses every token: one refresh per REFRESH_FLOOR (10 s)
    # and auth object, not one per call.
    api.mode = "always"
    forced: List[Optional[str]] = []
    real = a365.auth._refresh

    def counted(profile: Optional[str] = None) -> str:
        forced.append(profile)
        return real(profile)

    monkeypatch.setattr(a365.auth, "_refresh", counted)
    auth = A365RequestsAuth("demo")
    statuses = [_get(api.url, auth).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    assert forced == ["demo"]


def test_requests_auth_sends_the_current_token(agent: World, api: Api) -> None:
    api.mode = "never"
    for _ in range(6):
        api.seen.clear()
        response = _get(api.url, A365RequestsAuth("demo"))
        current = fp(a365.token("demo"))
        if api.seen == [current]:
            break
    assert response.status_code == 200
    assert api.seen == [current]


def test_httpx_auth_retries_once_with_a_new_token(agent: World, api: Api) -> None:
    with httpx.Client(auth=A365Auth("demo"), trust_env=False, timeout=60) as client:
        response = client.post(api.url, content=b"payload")
    assert response.status_code == 200
    assert len(api.seen) == 2, api.seen
    assert api.seen[0] != api.seen[1]
    assert api.bodies == [b"payload", b"payload"]


def test_httpx_auth_passes_a_second_401_on(agent: World, api: Api) -> None:
    api.mode = "always"
    with httpx.Client(auth=A365Auth("demo"), trust_env=False, timeout=60) as client:
        response = client.get(api.url)
    assert response.status_code == 401
    assert len(api.seen) == 2, api.seen


def test_httpx_async_auth_retries_once(agent: World, api: Api) -> None:
    async def go() -> int:
        async with httpx.AsyncClient(auth=A365Auth("demo"), trust_env=False, timeout=60) as client:
            return (await client.get(api.url)).status_code

    assert asyncio.run(go()) == 200
    assert len(api.seen) == 2, api.seen
    assert api.seen[0] != api.seen[1]


def test_the_auth_classes_raise_the_agents_errors(agent: World, api: Api) -> None:
    with pytest.raises(a365.UnknownProfile):
        _get(api.url, A365RequestsAuth("nope"))
    with pytest.raises(a365.UnknownProfile):
        httpx.get(api.url, auth=A365Auth("nope"), trust_env=False, timeout=60)
    assert api.seen == []
