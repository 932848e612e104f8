"""A private world for the tests, as scripts/demo makes one: temporary XDG
directories and socket, the local token server (tokens live 8 s, refresh
tokens rotate), a real a365-agent and a profile "demo". The binaries come
from $A365_E2E_BIN_DIR, else <repo>/target/debug.

Where every test must run (A365_REQUIRE_ALL=1, as .ci/run sets, or
CI=true), a skipped test fails: a skip would look like a pass.

No test prints a token: compare fingerprints (`fp`), never tokens, in
asserts (pytest shows the values of a failed assert).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[3]
T = TypeVar("T")


def every_test_must_run() -> bool:
    return os.environ.get("A365_REQUIRE_ALL") == "1" or os.environ.get("CI") == "true"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.skipped and every_test_must_run() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"every test must run here (A365_REQUIRE_ALL=1 or CI=true), but it was skipped: {reason}"
        )
    return report


def fp(token: Optional[str]) -> str:
    """A token's fingerprint, safe to show."""
    if token is None:
        return "None"
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def bin_dir() -> Path:
    return Path(os.environ.get("A365_E2E_BIN_DIR") or REPO / "target" / "debug")


def wait_for(what: str, check: Callable[[], Optional[T]], timeout: float = 60.0) -> T:
    """Polls `check` until it returns something (not None/False)."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


@dataclass
class World:
    dir: Path
    env: Dict[str, str]
    socket: Path
    token_url: str

    def bin(self, name: str) -> str:
        return str(bin_dir() / name)

    def run(self, *args: str, check: bool = True, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        """Runs a binary of bin_dir() in the world. Its output is kept,
        never shown unless it failed (a365 token's output is a token)."""
        out = subprocess.run(
            [self.bin(args[0]), *args[1:]],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {out.returncode}: {out.stderr.strip()}")
        return out

    def cli_token(self, profile: str = "demo") -> str:
        return self.run("a365", "token", profile).stdout.strip()


# Variables of the caller's world that would reach past the private one.
_DROPPED = (
    "A365_AGENT_SOCK",
    "A365_PROFILE",
    "XDG_CONFIG_HOME",
    "XDG_STATE_HOME",
    "XDG_RUNTIME_DIR",
    "XDG_DATA_HOME",
    "DBUS_SESSION_BUS_ADDRESS",
    "PYTHON_KEYRING_BACKEND",
)


@pytest.fixture(scope="session")
def world() -> Iterator[World]:
    bins = bin_dir()
    missing = [b for b in ("a365", "a365-agent", "a365-token-server") if not (bins / b).is_file()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not in {bins} (cargo build --bins, or set A365_E2E_BIN_DIR)")
    top = Path(tempfile.mkdtemp(prefix="a365-py-"))
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    for sub in ("config", "state", "home", "data"):
        (top / sub).mkdir()
    (top / "run").mkdir(mode=0o700)
    os.chmod(top / "run", 0o700)
    sock = top / "run" / "a365" / "agent.sock"
    env.update(
        HOME=str(top / "home"),
        XDG_CONFIG_HOME=str(top / "config"),
        XDG_STATE_HOME=str(top / "state"),
        XDG_DATA_HOME=str(top / "data"),
        XDG_RUNTIME_DIR=str(top / "run"),
        A365_AGENT_SOCK=str(sock),
    )
    server: Optional[subprocess.Popen[bytes]] = None
    agent_pid: Optional[int] = None
    try:
        with open(top / "server.out", "wb") as out, open(top / "server.log", "wb") as log:
            server = subprocess.Popen(
                [
                    str(bins / "a365-token-server"),
                    "--lifetime",
                    "8s",
                    "--client-id",
                    "demo",
                    "--write-secrets",
                    str(top / "secrets.json"),
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=log,
            )

        def token_url() -> Optional[str]:
            assert server is not None and server.poll() is None, "the token server exited"
            for line in (top / "server.out").read_text().splitlines():
                if line.startswith("token_url="):
                    return line[len("token_url=") :]
            return None

        url = wait_for("the token server's URL", token_url)
        world = World(top, env, sock, url)
        # Prints shell assignments and "echo Agent pid N;".
        started = world.run("a365-agent", "--daemon")
        for word in started.stdout.replace(";", " ").split():
            if word.isdigit():
                agent_pid = int(word)
        wait_for("the agent's socket", sock.exists)
        world.run(
            "a365",
            "add",
            "demo",
            "--kind",
            "refresh",
            "--token-url",
            url,
            "--client-id",
            "demo",
            "--secrets-from",
            str(top / "secrets.json"),
        )
        yield world
    finally:
        subprocess.run(
            [str(bins / "a365-agent"), "--kill"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
        )
        if agent_pid is not None:
            _end(agent_pid)
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(top, ignore_errors=True)


def _end(pid: int) -> None:
    """Ends the agent we started, if `--kill` did not."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return  # not ours (the pid was reused)
        # Reaped by init once it exits; until then it may be a zombie.
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def agent(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """The world's agent, for the client code in this process (which reads
    the environment at each call)."""
    for name in _DROPPED:
        monkeypatch.delenv(name, raising=False)
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR", "A365_AGENT_SOCK"):
        monkeypatch.setenv(name, world.env[name])
    return world


def agree(*getters: Callable[[], str], tries: int = 6) -> List[str]:
    """What each getter returns (a token's fingerprint), taken in turn until
    they agree: a token may be refreshed between two looks (they live 8 s),
    never twice in a row within one try."""
    seen: List[str] = []
    for _ in range(tries):
        seen = [get() for get in getters]
        if len(set(seen)) == 1:
            return seen
    return seen


def python(*args: str, env: Dict[str, str], timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    """This interpreter (the venv the package is installed in) in `env`."""
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
