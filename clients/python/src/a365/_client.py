"""Talking to a365-agent: where it listens, whether it is ours, one request
and its answer (docs/protocol.md, JSON mode), and the errors."""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import sys
import unicodedata
from typing import Any, Callable, Dict, Optional, Type, Union

#: The protocol version this client speaks. Requests that need nothing newer
#: say version 1, which every agent since the first accepts.
PROTOCOL_VERSION = 4
_OLDEST_JSON_VERSION = 1
#: The longest message either side sends (docs/protocol.md, "Limits").
MAX_MESSAGE = 64 * 1024
#: How long to wait for an answer: the agent itself waits up to 25 s for a
#: refresh in progress before answering.
DEFAULT_TIMEOUT = 60.0
SOCKET_ENV = "A365_AGENT_SOCK"

# A response: `{"token": {...}}`, `{"error": {...}}`, … or a plain string.
Response = Union[Dict[str, Any], str]


def clean(text: object, limit: int = 2000) -> str:
    """`text` (from the agent, untrusted) safe to show: control and format
    characters (escape sequences, bidi overrides) escaped, and cut at
    `limit` characters."""
    out = []
    for ch in str(text)[:limit]:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


# ---------------------------------------------------------------------------
# Errors


class A365Error(Exception):
    """Any failure to get an answer from the agent. `kind` is the agent's
    error kind (docs/protocol.md) or one of this client's own
    (`agent_not_running`, `not_our_agent`, `protocol_error`); `exit_code` the
    code `a365` exits with for the same error. Never holds a token."""

    kind: str = "error"
    exit_code: int = 1

    def __init__(self, message: str, kind: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, kind={self.kind!r})"


class AgentNotRunning(A365Error):
    """No agent answers where it would listen (`a365` exits 3)."""

    kind = "agent_not_running"
    exit_code = 3


class NotOurAgent(A365Error):
    """What listens there runs as another user, or cannot be told to be
    ours: refused before anything was sent (`a365` exits 9)."""

    kind = "not_our_agent"
    exit_code = 9


class ProtocolError(A365Error):
    """The agent's answer could not be understood."""

    kind = "protocol_error"
    exit_code = 1


class BadRequest(A365Error):
    kind = "bad_request"
    exit_code = 1


class UnknownProfile(A365Error):
    """No such profile, or no default one."""

    kind = "unknown_profile"
    exit_code = 4


class NeedsReauth(A365Error):
    """The credential is dead: the user must create a new one."""

    kind = "needs_reauth"
    exit_code = 5


class Unavailable(A365Error):
    """No token good enough right now (token server down, rate limited, or
    `min_valid` cannot be met); the message says when to retry."""

    kind = "unavailable"
    exit_code = 6


class MissingScope(A365Error):
    kind = "missing_scope"
    exit_code = 7


class InvalidProfile(A365Error):
    kind = "invalid_profile"
    exit_code = 8


class PermissionDenied(A365Error):
    """The agent says we are not its user."""

    kind = "permission_denied"
    exit_code = 9


class InternalError(A365Error):
    kind = "internal"
    exit_code = 1


class UnusableToken(A365Error):
    """The token cannot be sent in an HTTP header: it holds a character
    other than visible ASCII (a space, a control character, …). Raised by
    the auth classes before anything is sent; the message does not show
    the token."""

    kind = "unusable_token"
    exit_code = 1


_AGENT_ERRORS: Dict[str, Type[A365Error]] = {
    cls.kind: cls
    for cls in (
        BadRequest,
        UnknownProfile,
        NeedsReauth,
        Unavailable,
        MissingScope,
        InvalidProfile,
        PermissionDenied,
        InternalError,
    )
}

#: `a365`'s exit code for each error kind the agent answers.
EXIT_CODES: Dict[str, int] = {kind: cls.exit_code for kind, cls in _AGENT_ERRORS.items()}


def error_from(reply: Any) -> A365Error:
    """The exception for an `error` answer's body."""
    if not isinstance(reply, dict):
        return ProtocolError("the agent answered an error without a kind or message")
    kind = clean(reply.get("kind", "error"), 40)
    message = clean(reply.get("message", ""))
    cls = _AGENT_ERRORS.get(kind)
    if cls is None:
        return A365Error(f"{message} ({kind})", kind)
    return cls(message)


# ---------------------------------------------------------------------------
# Where the agent listens


def _home() -> str:
    if sys.platform == "win32":  # POSIX only
        raise NotImplementedError
    home = os.environ.get("HOME")
    if home:
        return home
    import pwd

    return pwd.getpwuid(os.getuid()).pw_dir


def _session_dir() -> str:
    if sys.platform == "win32":  # POSIX only
        raise NotImplementedError
    return f"/run/user/{os.geteuid()}"


def unsafe_dir(path: str) -> Optional[str]:
    """Why `path` is not a directory only we control, or None: a real
    directory (not a link) of ours that nobody else can write, every
    directory above it ours or root's and writable by nobody else unless
    sticky (the rule a365 applies, like ssh's StrictModes)."""
    if sys.platform == "win32":  # POSIX only
        raise NotImplementedError
    me = os.geteuid()
    try:
        st = os.lstat(path)
    except OSError as e:
        return f"{path}: {e.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != me:
        return f"{path} belongs to uid {st.st_uid}, not to you (uid {me})"
    if st.st_mode & 0o022:
        return f"{path} is writable by others (mode {st.st_mode & 0o7777:o})"
    real = os.path.realpath(path)
    above = os.path.dirname(real)
    while True:
        try:
            st = os.lstat(above)
        except OSError as e:
            return f"{above}: {e.strerror}"
        if st.st_uid not in (me, 0):
            return f"{above} above {path} belongs to uid {st.st_uid}, who could replace it"
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            return f"{above} above {path} is writable by others and not sticky"
        parent = os.path.dirname(above)
        if parent == above:
            return None
        above = parent


def socket_path() -> str:
    """Where the agent listens, as `a365` finds it (docs/protocol.md):
    `$A365_AGENT_SOCK`; else `$XDG_RUNTIME_DIR/a365/agent.sock` (not on
    macOS); else on Linux `/run/user/$UID/a365/agent.sock` when that
    directory is ours alone; else `$XDG_STATE_HOME/a365/agent.sock`
    (`~/.local/state`), on macOS `~/Library/Application Support/a365/…`.
    On Windows the agent's named pipe."""
    path = os.environ.get(SOCKET_ENV)
    if path:
        return path
    if sys.platform == "win32":
        from . import _windows

        return _windows.default_pipe_path()
    if sys.platform != "darwin":
        run = os.environ.get("XDG_RUNTIME_DIR")
        if run and os.path.isabs(run):
            return os.path.join(run, "a365", "agent.sock")
        if sys.platform.startswith("linux"):
            session = _session_dir()
            if unsafe_dir(session) is None:
                return os.path.join(session, "a365", "agent.sock")
    if sys.platform == "darwin":
        base = os.path.join(_home(), "Library", "Application Support")
    else:
        state = os.environ.get("XDG_STATE_HOME")
        base = state if state and os.path.isabs(state) else os.path.join(_home(), ".local", "state")
    return os.path.join(base, "a365", "agent.sock")


# ---------------------------------------------------------------------------
# The connection


def _refuse(why: str) -> NotOurAgent:
    return NotOurAgent(f"refusing the agent: {why}; nothing was sent")


def check_peer(sock: socket.socket, path: str) -> None:
    """Raises NotOurAgent unless the agent at `path` runs as us: another
    user may have created the socket first, and would read what we send
    and answer with a token of its choosing. Linux says who listens
    (SO_PEERCRED); elsewhere the socket and its directory must be ours."""
    if sys.platform == "win32":  # POSIX only
        raise NotImplementedError
    me = os.geteuid()
    shown = clean(path)
    peercred = getattr(socket, "SO_PEERCRED", None)
    if peercred is not None:
        size = struct.calcsize("iII")
        try:
            creds = sock.getsockopt(socket.SOL_SOCKET, peercred, size)
            _pid, uid, _gid = struct.unpack("iII", creds[:size])
        except (OSError, struct.error) as e:
            raise _refuse(f"the user of the process at {shown} cannot be read ({e})") from None
        if uid != me:
            raise _refuse(f"the process at {shown} runs as uid {uid}, not as you (uid {me})")
        return
    why = unsafe_dir(os.path.dirname(path) or ".")
    if why is not None:
        raise _refuse(clean(why))
    try:
        st = os.lstat(path)
    except OSError as e:
        raise _refuse(f"{shown}: {e.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != me:
        raise _refuse(f"{shown} is not a socket of yours")


class Connection:
    """One connection to the agent, its identity checked: send a request,
    read its answer, as often as needed."""

    def __init__(
        self,
        where: str,
        send: Callable[[bytes], None],
        recv: Callable[[int], bytes],
        close: Callable[[], None],
        set_timeout: Callable[[Optional[float]], None],
    ) -> None:
        self.where = where
        self._send = send
        self._recv = recv
        self._close = close
        self._set_timeout = set_timeout
        self._buffer = bytearray()
        self.closed = False

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._buffer.clear()
            try:
                self._close()
            except OSError:
                pass

    def settimeout(self, timeout: Optional[float]) -> None:
        self._set_timeout(timeout)

    def send(self, request: Union[Dict[str, Any], str], version: int = _OLDEST_JSON_VERSION) -> None:
        line = json.dumps({"version": version, "request": request}, separators=(",", ":"))
        try:
            self._send(line.encode() + b"\n")
        except OSError as e:
            raise AgentNotRunning(f"talking to the agent at {self.where}: {e}") from None

    def receive(self) -> Optional[Response]:
        """The next answer; None when the agent closed the connection
        between messages."""
        try:
            while b"\n" not in self._buffer:
                if len(self._buffer) > MAX_MESSAGE:
                    raise ProtocolError(f"the agent at {self.where} sent a message over 64 KiB")
                chunk = self._recv(MAX_MESSAGE)
                if not chunk:
                    if self._buffer:
                        raise ProtocolError(f"the agent at {self.where} closed the connection mid-message")
                    return None
                self._buffer += chunk
        except (socket.timeout, TimeoutError):
            raise AgentNotRunning(f"the agent at {self.where} did not answer in time") from None
        except OSError as e:
            raise AgentNotRunning(f"talking to the agent at {self.where}: {e}") from None
        end = self._buffer.index(b"\n")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        try:
            envelope = json.loads(line)
        except ValueError:
            # Not shown: the line may hold a token.
            raise ProtocolError(f"the agent at {self.where} answered something that is not JSON") from None
        response = envelope.get("response") if isinstance(envelope, dict) else None
        if not isinstance(response, (dict, str)):
            raise ProtocolError(f"the agent at {self.where} answered without a response")
        return response


def connect(timeout: Optional[float] = DEFAULT_TIMEOUT) -> Connection:
    """A connection to the agent, checked to run as us before anything is
    sent."""
    path = socket_path()
    if sys.platform == "win32":
        from . import _windows

        return _windows.connect(path, timeout)
    shown = clean(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as e:
            raise AgentNotRunning(
                f"no agent answers at {shown} ({e.strerror or e}): start one with "
                "`eval \"$(a365-agent --daemon)\"` or its service, or set A365_AGENT_SOCK"
            ) from None
        check_peer(sock, path)
    except BaseException:
        sock.close()
        raise

    def close() -> None:
        try:
            # Also wakes a thread blocked reading (a watch being closed).
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    return Connection(shown, sock.sendall, sock.recv, close, sock.settimeout)


def call(
    request: Union[Dict[str, Any], str],
    version: int = _OLDEST_JSON_VERSION,
    timeout: Optional[float] = DEFAULT_TIMEOUT,
) -> Response:
    """Sends one request on a new connection and returns its answer;
    raises the answer's error as an A365Error."""
    with connect(timeout) as conn:
        conn.send(request, version)
        response = conn.receive()
        if response is None:
            raise AgentNotRunning(f"the agent at {conn.where} closed the connection without answering")
    if isinstance(response, dict) and "error" in response:
        raise error_from(response["error"])
    return response


def expect(response: Response, name: str) -> Any:
    """The body of a `name` answer."""
    if isinstance(response, dict) and name in response:
        return response[name]
    got = next(iter(response), "?") if isinstance(response, dict) else response
    raise ProtocolError(f"the agent answered {clean(got, 40)!r} where {name!r} was expected")
