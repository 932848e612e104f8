#!/usr/bin/env python3
"""Get a token from a365-agent over its JSON protocol (standard library only).

Usage: a365_token.py [PROFILE] [--min-valid-ms N] [--status]

The same thing an editor plugin does: connect to the agent's socket, send one
JSON line, read one JSON line. See docs/protocol.md.
"""
import json
import os
import socket
import sys
import tempfile

# a365's exit codes, by error kind (see docs/protocol.md).
EXIT_CODES = {
    "bad_request": 1, "internal": 1, "unknown_profile": 4, "needs_reauth": 5,
    "unavailable": 6, "missing_scope": 7, "invalid_profile": 8, "permission_denied": 9,
}


def socket_path():
    if os.environ.get("A365_AGENT_SOCK"):
        return os.environ["A365_AGENT_SOCK"]
    if os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "a365", "agent.sock")
    return os.path.join(tempfile.gettempdir(), f"a365-{os.getuid()}", "agent.sock")


def ask(request):
    """Sends one request, returns the response object."""
    path = socket_path()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)
            sock.sendall(json.dumps({"version": 1, "request": request}).encode() + b"\n")
            line = sock.makefile("rb").readline()
    except OSError as e:
        print(f"a365_token.py: no agent at {path}: {e}", file=sys.stderr)
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
