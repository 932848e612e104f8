"""The agent's identity is checked before anything is sent, and where the
client looks for it."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import tempfile
import threading
from pathlib import Path
from typing import Iterator, List

import pytest

import a365
import a365._client as client
from a365 import _windows
from conftest import World, fp

NOBODY = 65534

def _listen_as_nobody(path: Path, report: int) -> None:
    """In a forked child: becomes nobody, listens at `path`, says "ready",
    and after one connection (or 60 s) says how many bytes it received.
    Never returns."""
    try:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen(1)
        os.write(report, f"ready {os.getuid()} {os.stat(path).st_uid}\n".encode())
        server.settimeout(60)
        received = 0
        try:
            conn, _ = server.accept()
            conn.settimeout(30)
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                received += len(data)
        except OSError:
            pass
        os.write(report, f"received {received}\n".encode())
    except BaseException as e:  # noqa: BLE001 (reported to the parent)
        os.write(report, f"error {e!r}\n".encode())
    finally:
        os._exit(0)


def _read_line(fd: int, timeout: float = 60.0) -> str:
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise AssertionError(f"the listener said nothing in {timeout:.0f} s (so far: {line!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            break
        line += chunk
    return line.decode()


@pytest.fixture
def foreign_socket() -> Iterator[Path]:
    """A unix socket that another user (nobody) listens on, in a directory of
    theirs, as a user who got there first would. Needs root."""
    if os.geteuid() != 0:
        pytest.skip("needs root to listen as another user (uid 65534)")
    top = Path(tempfile.mkdtemp(prefix="a365-py-other-"))
    pid = 0
    r = -1
    try:
        os.chmod(top, 0o711)
        theirs = top / "a365"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, NOBODY, NOBODY)
        path = theirs / "agent.sock"
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _listen_as_nobody(path, w)
        os.close(w)
        ready = _read_line(r).split()
        assert ready == ["ready", str(NOBODY), str(NOBODY)], ready
        yield path
        # The test connected and closed: the listener reports.
        report = _read_line(r).split()
        assert report == ["received", "0"], f"the other user's listener: {report}"
    finally:
        if r >= 0:
            os.close(r)
        if pid > 0:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        shutil.rmtree(top, ignore_errors=True)


def test_a_socket_of_another_user_is_refused_before_sending(
    foreign_socket: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("A365_AGENT_SOCK", str(foreign_socket))
    with pytest.raises(a365.NotOurAgent) as caught:
        a365.token("demo")
    message = str(caught.value)
    assert "uid 65534" in message and "nothing was sent" in message, message
    assert caught.value.exit_code == 9


def test_without_peer_credentials_the_directory_and_socket_must_be_ours(
    foreign_socket: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the client does where SO_PEERCRED does not exist (macOS, BSD).
    monkeypatch.delattr(socket, "SO_PEERCRED", raising=False)
    monkeypatch.setenv("A365_AGENT_SOCK", str(foreign_socket))
    with pytest.raises(a365.NotOurAgent) as caught:
        a365.token("demo")
    message = str(caught.value)
    assert "belongs to uid 65534" in message and "nothing was sent" in message, message


def test_without_peer_credentials_our_own_agent_is_accepted(agent: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(socket, "SO_PEERCRED", raising=False)
    assert fp(a365.token("demo")).startswith("sha256:")


class FakeAgent:
    """An agent of our own user that records requests and answers each
    with the next canned line."""

    def __init__(self, directory: Path, answers: List[bytes]) -> None:
        self.path = directory / "fake.sock"
        self.requests: List[dict] = []
        self.answers = list(answers)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.path))
        self.server.listen(8)
        self.server.settimeout(60)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                line = conn.makefile("rb").readline()
                if line:
                    self.requests.append(json.loads(line))
                conn.sendall(self.answers.pop(0))


@pytest.fixture
def private_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="a365-py-fake-"))
    os.chmod(top, 0o700)
    for name in ("A365_PROFILE", "A365_AGENT_SOCK"):
        monkeypatch.delenv(name, raising=False)
    yield top
    shutil.rmtree(top, ignore_errors=True)


def test_agent_text_is_escaped_and_requests_are_as_documented(private_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hostile = "no \x1b[31mred\x1b[0m profile\u202e\x07"
    secret = "eyJ-not-a-real-token"
    fake = FakeAgent(
        private_dir,
        [
            json.dumps({"version": 4, "response": {"error": {"kind": "unknown_profile", "message": hostile}}}).encode() + b"\n",
            json.dumps({"version": 4, "response": {"error": {"kind": "brand_new\x1b", "message": "m"}}}).encode() + b"\n",
            b'{"version":4,"response":{"token":{"profile":"w.ws-1","token":"' + secret.encode() + b'"\n',
            json.dumps(
                {"version": 4, "response": {"token": {"profile": "w.ws-1", "token": secret, "expires_at": None, "scopes": []}}}
            ).encode()
            + b"\n",
        ],
    )
    monkeypatch.setenv("A365_AGENT_SOCK", str(fake.path))
    with pytest.raises(a365.UnknownProfile) as caught:
        a365.token("work")
    shown = str(caught.value)
    assert "\x1b" not in shown and "\u202e" not in shown and "\x07" not in shown, repr(shown)
    assert "\\x1b[31mred" in shown, repr(shown)
    with pytest.raises(a365.A365Error) as other:
        a365.token("work", min_valid=1.5)
    assert other.value.kind == "brand_new\\x1b" and other.value.exit_code == 1
    with pytest.raises(a365.ProtocolError) as garbled:
        a365.token()
    assert secret not in str(garbled.value) and secret not in repr(garbled.value)
    info = a365.token_info("w", workspace="Design")
    assert info.token == secret and info.expires_at is None and secret not in repr(info)
    assert fake.requests == [
        {"version": 1, "request": {"token": {"profile": "work", "min_valid_ms": 5000, "scopes": []}}},
        {"version": 1, "request": {"token": {"profile": "work", "min_valid_ms": 1500, "scopes": []}}},
        {"version": 1, "request": {"token": {"profile": None, "min_valid_ms": 5000, "scopes": []}}},
        # `workspace` is new in version 4: an older agent refuses it, not ignores it.
        {"version": 4, "request": {"token": {"profile": "w", "min_valid_ms": 5000, "scopes": [], "workspace": "Design"}}},
    ]


def test_socket_discovery_follows_the_protocol(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("A365_AGENT_SOCK", "XDG_RUNTIME_DIR", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("A365_AGENT_SOCK", "/somewhere/agent.sock")
    assert a365.socket_path() == "/somewhere/agent.sock"
    monkeypatch.setenv("A365_AGENT_SOCK", "")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/me")
    assert a365.socket_path() == "/run/me/a365/agent.sock"
    # Relative: ignored, as a365 does.
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative")
    session = tmp_path / "session"
    monkeypatch.setattr(client, "_session_dir", lambda: str(session))
    state = tmp_path / "home" / ".local" / "state" / "a365" / "agent.sock"
    assert a365.socket_path() == str(state), "no session directory"
    session.mkdir(mode=0o700)
    os.chmod(session, 0o700)
    assert a365.socket_path() == str(session / "a365" / "agent.sock")
    os.chmod(session, 0o722)
    assert a365.socket_path() == str(state), "a session directory others can write"
    os.chmod(session, 0o700)
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert a365.socket_path() == str(session / "a365" / "agent.sock")
    session.rmdir()
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "st"))
    assert a365.socket_path() == str(tmp_path / "st" / "a365" / "agent.sock")


def test_the_windows_pipe_name_comes_from_localappdata(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The one part of the Windows code that runs here: the pipe's name.
    monkeypatch.setenv("USERNAME", "alice")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path))
    with pytest.raises(a365.AgentNotRunning, match="no agent has run"):
        _windows.default_pipe_path()
    (tmp_path / "a365").mkdir()
    (tmp_path / "a365" / "pipe-name").write_text("0123456789abcdef0123456789abcdef\n")
    assert _windows.default_pipe_path() == r"\\.\pipe\a365-agent-alice-0123456789abcdef0123456789abcdef"
    (tmp_path / "a365" / "pipe-name").write_text("../../evil")
    with pytest.raises(a365.AgentNotRunning):
        _windows.default_pipe_path()
