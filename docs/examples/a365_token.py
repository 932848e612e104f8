#!/usr/bin/env python3
"""Get a token from a365-agent over its JSON protocol (standard library only).

Usage: a365_token.py [PROFILE] [--min-valid-ms N] [--status]

The same thing an editor plugin does: connect to the agent's socket, send one
JSON line, read one JSON line. See docs/protocol.md.

A standalone sketch of the protocol. For Python programs, use the package in
clients/python (`pip install ./clients/python`): `a365.token("work")`,
`a365.watch()`, auth classes for httpx and requests, and a keyring backend.
"""
import json
import os
import socket
import stat
import struct
import sys

# a365's exit codes, by error kind (see docs/protocol.md).
EXIT_CODES = {
    "bad_request": 1, "internal": 1, "unknown_profile": 4, "needs_reauth": 5,
    "unavailable": 6, "missing_scope": 7, "invalid_profile": 8, "permission_denied": 9,
}


def ours(path):
    """A directory of our own that nobody else can write (checked without
    following a link)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def socket_path():
    """Where a365 looks (docs/protocol.md): never a shared place like /tmp."""
    if os.environ.get("A365_AGENT_SOCK"):
        return os.environ["A365_AGENT_SOCK"]
    if os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "a365", "agent.sock")
    session = f"/run/user/{os.geteuid()}"
    if sys.platform.startswith("linux") and ours(session):
        return os.path.join(session, "a365", "agent.sock")
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        state = os.path.join(home, "Library", "Application Support")
    else:
        state = os.environ.get("XDG_STATE_HOME") or os.path.join(home, ".local", "state")
    return os.path.join(state, "a365", "agent.sock")


def refuse(message):
    print(f"a365_token.py: {message}; nothing was sent", file=sys.stderr)
    sys.exit(9)


def check_peer(sock, path):
    """The agent must run as us: another user may have created the socket
    first, and would receive our requests and hand us tokens of its choice.
    Linux tells the peer's uid (SO_PEERCRED); elsewhere the socket and its
    directory must at least be ours."""
    me = os.geteuid()
    if hasattr(socket, "SO_PEERCRED"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != me:
            refuse(f"the process at {path} runs as uid {uid}, not as you (uid {me})")
        return
    if not ours(os.path.dirname(path) or "."):
        refuse(f"{os.path.dirname(path)} is not a directory of yours that only you can write")
    if os.lstat(path).st_uid != me:
        refuse(f"{path} does not belong to you")


def ask(request):
    """Sends one request, returns the response object."""
    path = socket_path()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError as e:
            print(f"a365_token.py: no agent at {path}: {e}", file=sys.stderr)
            sys.exit(3)
        check_peer(sock, path)
        try:
            sock.sendall(json.dumps({"version": 1, "request": request}).encode() + b"\n")
            line = sock.makefile("rb").readline()
        except OSError as e:
            print(f"a365_token.py: talking to the agent at {path}: {e}", file=sys.stderr)
            sys.exit(3)
    return json.loads(line)["response"]


def main(argv):
    profile, min_valid_ms, status = None, 0, False
    args = iter(argv)
    for arg in args:
        if arg == "--min-valid-ms":
            min_valid_ms = int(next(args, "0"))
        elif arg == "--status":
            status = True
        else:
            profile = arg
    if status:
        response = ask("status")
        print(json.dumps(response.get("status", response), indent=2))
        return 0
    response = ask({"token": {"profile": profile, "min_valid_ms": min_valid_ms, "scopes": []}})
    if "error" in response:
        print(f"a365_token.py: {response['error']['message']}", file=sys.stderr)
        return EXIT_CODES.get(response["error"]["kind"], 1)
    print(response["token"]["token"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
