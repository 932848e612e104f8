"""The httpx and requests auth classes against a loopback API that answers
401 to the first request (or to every request)."""

from __future__ import annotations

import asyncio
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Iterator, List, Optional, Tuple

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
            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        chunk = self.rfile.read(size + 2)[:size]
                        if not size:
                            return body
                        body += chunk
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self) -> None:
                api.bodies.append(self._body())
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
            do_PUT = _answer

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


def _chunks() -> Iterator[bytes]:
    yield b"pay"
    yield b"load"


def test_a_body_that_cannot_be_sent_again_is_not(agent: World, api: Api) -> None:
    # An iterator is gone once sent: the 401 is the answer, not a request
    # with an empty body.
    with requests.Session() as session:
        session.trust_env = False
        response = session.put(api.url, data=_chunks(), auth=A365RequestsAuth("demo"), timeout=60)
    assert response.status_code == 401
    assert response.history == []
    assert api.bodies == [b"payload"]
    api.seen.clear()
    with httpx.Client(auth=A365Auth("demo"), trust_env=False, timeout=60) as client:
        assert client.put(api.url, content=_chunks()).status_code == 401
    assert api.bodies == [b"payload", b"payload"]
    assert len(api.seen) == 1, api.seen


def test_requests_auth_rewinds_a_file_body_to_where_it_started(agent: World, api: Api) -> None:
    body = io.BytesIO(b"--payload")
    body.seek(2)
    with requests.Session() as session:
        session.trust_env = False
        response = session.put(api.url, data=body, auth=A365RequestsAuth("demo"), timeout=60)
    assert response.status_code == 200
    assert api.bodies == [b"payload", b"payload"]
    assert api.seen[0] != api.seen[1]


class _Agent:
    """Stands in for the agent in a365.auth: token_info answers the
    tokens given in turn (the last one again), or raises them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *answers: object) -> None:
        self.answers = list(answers)
        self.refreshed: List[Optional[str]] = []
        monkeypatch.setattr(a365.auth, "token_info", self.token_info)
        monkeypatch.setattr(a365.auth, "_refresh", self.refresh)

    def token_info(self, *_args: object) -> a365.Token:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, str)
        return a365.Token("demo", None, (), answer)

    def refresh(self, profile: Optional[str] = None) -> str:
        self.refreshed.append(profile)
        raise a365.Unavailable("a token request waits for the budget until 12:00")


@pytest.mark.parametrize("later", ["refresh", "token"])
def test_an_error_while_renewing_after_a_401_returns_the_401(
    api: Api, monkeypatch: pytest.MonkeyPatch, later: str
) -> None:
    # The refresh (held back by the token request budget) or the token
    # request after the 401 fails: the 401 is the answer, nothing raised.
    api.mode = "always"

    def fake() -> _Agent:
        if later == "refresh":
            return _Agent(monkeypatch, "token-one")
        return _Agent(monkeypatch, "token-one", a365.Unavailable("the token server is down"))

    fake()
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(api.url, auth=A365RequestsAuth("demo"), timeout=60)
    assert response.status_code == 401 and response.history == []
    fake()
    with httpx.Client(auth=A365Auth("demo"), trust_env=False, timeout=60) as client:
        assert client.get(api.url).status_code == 401

    async def go() -> int:
        async with httpx.AsyncClient(auth=A365Auth("demo"), trust_env=False, timeout=60) as client:
            return (await client.get(api.url)).status_code

    fake()
    assert asyncio.run(go()) == 401
    assert api.seen == [fp("token-one")] * 3


@pytest.mark.parametrize("bad", ["s3cr3t x", "s3cr3t\nx", "s3cr3t\x00x", "s3cr3tö", "s3cr3t\tx", " s3cr3t"])
def test_a_token_that_cannot_go_in_a_header_is_refused_unshown(
    api: Api, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    _Agent(monkeypatch, bad)
    errors: List[a365.A365Error] = []
    with pytest.raises(a365.UnusableToken) as e:
        _get(api.url, A365RequestsAuth("demo"))
    errors.append(e.value)
    with pytest.raises(a365.UnusableToken) as e:
        httpx.get(api.url, auth=A365Auth("demo"), trust_env=False, timeout=60)
    errors.append(e.value)
    for error in errors:
        assert "s3cr3t" not in str(error) and "s3cr3t" not in repr(error)
        assert isinstance(error, a365.A365Error)
    assert api.seen == []


def test_a_scheme_or_header_that_would_leak_is_refused() -> None:
    with pytest.raises(ValueError):
        A365RequestsAuth("demo", scheme="Bearer x")
    with pytest.raises(ValueError):
        A365Auth("demo", scheme="Bearer\n")
    with pytest.raises(ValueError):
        A365Auth("demo", header="X-Api-Key")  # httpx would carry it on to another host


class Hops:
    """A loopback server on 127.0.0.1 that redirects: /away to the same
    port under the name localhost (another host), /near to /landing on
    the same host. Records the host, path and whether a token came (in
    Authorization or X-Api-Key) of each request."""

    def __init__(self) -> None:
        self.seen: List[Tuple[str, str, bool]] = []
        hops = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
                token = bool(self.headers.get("Authorization") or self.headers.get("X-Api-Key"))
                hops.seen.append((host, self.path, token))
                where: Dict[str, str] = {"/away": f"http://localhost:{hops.port}/landing", "/near": "/landing"}
                if self.path in where:
                    self.send_response(302)
                    self.send_header("Location", where[self.path])
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hops() -> Iterator[Hops]:
    server = Hops()
    yield server
    server.close()


def test_no_token_follows_a_redirect_to_another_host(agent: World, hops: Hops) -> None:
    away = [("127.0.0.1", "/away", True), ("localhost", "/landing", False)]
    near = [("127.0.0.1", "/near", True), ("127.0.0.1", "/landing", True)]
    for auth in (A365RequestsAuth("demo"), A365RequestsAuth("demo", header="X-Api-Key", scheme="")):
        for path, expected in (("/away", away), ("/near", near)):
            hops.seen.clear()
            assert _get(hops.url + path, auth).status_code == 200
            assert hops.seen == expected, (auth.header, path)
    with httpx.Client(auth=A365Auth("demo"), trust_env=False, timeout=60, follow_redirects=True) as client:
        for path, expected in (("/away", away), ("/near", near)):
            hops.seen.clear()
            assert client.get(hops.url + path).status_code == 200
            assert hops.seen == expected, path

    async def go() -> int:
        async with httpx.AsyncClient(auth=A365Auth("demo"), trust_env=False, timeout=60, follow_redirects=True) as c:
            return (await c.get(hops.url + "/away")).status_code

    hops.seen.clear()
    assert asyncio.run(go()) == 200
    assert hops.seen == away
    # Not followed, then sent with the auth: no token for another host.
    with httpx.Client(auth=A365Auth("demo"), trust_env=False, timeout=60) as client:
        hops.seen.clear()
        first = client.get(hops.url + "/away")
        assert first.status_code == 302 and first.next_request is not None
        assert client.send(first.next_request).status_code == 200
        assert hops.seen == away
