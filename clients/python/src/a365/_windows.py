"""Windows: the agent's named pipe, and whether the process serving it runs
as our user (ctypes only). Imported on Windows only, except
`default_pipe_path`, which is plain Python.

Like `a365`: the pipe is opened as an identification-only client
(SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION: whoever serves it may
learn who we are, not act as us), and before anything is sent the server
process's token user (GetNamedPipeServerProcessId, OpenProcess,
OpenProcessToken, GetTokenInformation(TokenUser)) must equal ours
(EqualSid).
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional

from ._client import AgentNotRunning, Connection, NotOurAgent, clean


def default_pipe_path() -> str:
    """`\\\\.\\pipe\\a365-agent-{USERNAME}-{random}`, the random part from
    `%LOCALAPPDATA%\\a365\\pipe-name`, which the agent writes on first use
    (so another user cannot create the pipe first under a name they could
    guess)."""
    user = os.environ.get("USERNAME")
    local = os.environ.get("LOCALAPPDATA")
    if not user or not local:
        raise AgentNotRunning("USERNAME or LOCALAPPDATA is not set: set A365_AGENT_SOCK to the agent's pipe")
    name_file = os.path.join(local, "a365", "pipe-name")
    try:
        with open(name_file, encoding="ascii", errors="replace") as f:
            suffix = f.read(100).strip()
    except OSError:
        raise AgentNotRunning(
            f"no agent has run for this user yet ({clean(name_file)} is missing): start a365-agent"
        ) from None
    if not re.fullmatch(r"[0-9a-fA-F]{32}", suffix):
        raise AgentNotRunning(f"{clean(name_file)} does not hold a pipe name: start a365-agent again")
    return rf"\\.\pipe\a365-agent-{user}-{suffix}"


# The Win32 constants used below.
_GENERIC_READ = 0x80000000
_GENERIC_WRITE = 0x40000000
_OPEN_EXISTING = 3
_SECURITY_SQOS_PRESENT = 0x00100000
_SECURITY_IDENTIFICATION = 0x00010000
_ERROR_PIPE_BUSY = 231
_ERROR_BROKEN_PIPE = 109
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_TOKEN_QUERY = 0x0008
_TOKEN_USER = 1  # TokenUser, of TOKEN_INFORMATION_CLASS


def _api() -> Any:
    import ctypes
    from ctypes import wintypes

    k32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
    adv = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
    H, D, B = wintypes.HANDLE, wintypes.DWORD, wintypes.BOOL
    P = ctypes.POINTER
    k32.CreateFileW.restype = H
    k32.CreateFileW.argtypes = [wintypes.LPCWSTR, D, D, ctypes.c_void_p, D, D, H]
    k32.WaitNamedPipeW.argtypes = [wintypes.LPCWSTR, D]
    k32.GetNamedPipeServerProcessId.argtypes = [H, P(wintypes.ULONG)]
    k32.GetNamedPipeServerProcessId.restype = B
    k32.OpenProcess.restype = H
    k32.OpenProcess.argtypes = [D, B, D]
    k32.GetCurrentProcess.restype = H
    k32.CloseHandle.argtypes = [H]
    k32.ReadFile.argtypes = [H, ctypes.c_void_p, D, P(D), ctypes.c_void_p]
    k32.ReadFile.restype = B
    k32.WriteFile.argtypes = [H, ctypes.c_void_p, D, P(D), ctypes.c_void_p]
    k32.WriteFile.restype = B
    adv.OpenProcessToken.argtypes = [H, D, P(H)]
    adv.OpenProcessToken.restype = B
    adv.GetTokenInformation.argtypes = [H, ctypes.c_int, ctypes.c_void_p, D, P(D)]
    adv.GetTokenInformation.restype = B
    adv.EqualSid.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    adv.EqualSid.restype = B
    return ctypes, wintypes, k32, adv


def _token_user(api: Any, process: Any) -> Any:
    """The buffer holding `process`'s TOKEN_USER (its SID pointer first)."""
    ctypes, wintypes, k32, adv = api
    token = wintypes.HANDLE()
    if not adv.OpenProcessToken(process, _TOKEN_QUERY, ctypes.byref(token)):
        raise ctypes.WinError(ctypes.get_last_error())
    try:
        size = wintypes.DWORD(0)
        adv.GetTokenInformation(token, _TOKEN_USER, None, 0, ctypes.byref(size))
        if not size.value:
            raise ctypes.WinError(ctypes.get_last_error())
        buffer = (ctypes.c_uint64 * ((size.value + 7) // 8))()
        if not adv.GetTokenInformation(token, _TOKEN_USER, buffer, size, ctypes.byref(size)):
            raise ctypes.WinError(ctypes.get_last_error())
        return buffer
    finally:
        k32.CloseHandle(token)


def _check_server(api: Any, handle: Any, shown: str) -> None:
    ctypes, wintypes, k32, adv = api
    try:
        pid = wintypes.ULONG(0)
        if not k32.GetNamedPipeServerProcessId(handle, ctypes.byref(pid)):
            raise ctypes.WinError(ctypes.get_last_error())
        process = k32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid.value)
        if not process:
            raise ctypes.WinError(ctypes.get_last_error())
        try:
            theirs = _token_user(api, process)
        finally:
            k32.CloseHandle(process)
        ours = _token_user(api, k32.GetCurrentProcess())
        sid = ctypes.c_void_p
        same = adv.EqualSid(sid.from_buffer(theirs).value, sid.from_buffer(ours).value)
    except OSError as e:
        raise NotOurAgent(
            f"refusing the agent: the user of the process serving {shown} cannot be read ({e}); nothing was sent"
        ) from None
    if not same:
        raise NotOurAgent(
            f"refusing the agent: the process serving {shown} runs as another user; nothing was sent"
        )


def connect(path: str, timeout: Optional[float]) -> Connection:
    """The agent's pipe at `path`, its server checked to run as us.
    (`timeout` is not applied to pipe reads.)"""
    api = _api()
    ctypes, wintypes, k32, _adv = api
    shown = clean(path)
    invalid = wintypes.HANDLE(-1).value
    for attempt in range(11):
        handle = k32.CreateFileW(
            path,
            _GENERIC_READ | _GENERIC_WRITE,
            0,
            None,
            _OPEN_EXISTING,
            _SECURITY_SQOS_PRESENT | _SECURITY_IDENTIFICATION,
            None,
        )
        if handle and handle != invalid:
            break
        err = ctypes.get_last_error()
        if err != _ERROR_PIPE_BUSY or attempt == 10:
            raise AgentNotRunning(f"no agent answers at {shown} ({ctypes.FormatError(err)}): start a365-agent")
        k32.WaitNamedPipeW(path, 500)
    try:
        _check_server(api, handle, shown)
    except BaseException:
        k32.CloseHandle(handle)
        raise

    def send(data: bytes) -> None:
        view = memoryview(data)
        while view:
            done = wintypes.DWORD(0)
            chunk = bytes(view[:65536])
            if not k32.WriteFile(handle, chunk, len(chunk), ctypes.byref(done), None):
                raise ctypes.WinError(ctypes.get_last_error())
            view = view[done.value :]

    def recv(size: int) -> bytes:
        buffer = ctypes.create_string_buffer(size)
        done = wintypes.DWORD(0)
        if not k32.ReadFile(handle, buffer, size, ctypes.byref(done), None):
            err = ctypes.get_last_error()
            if err == _ERROR_BROKEN_PIPE:
                return b""
            raise ctypes.WinError(err)
        data: bytes = buffer.raw[: done.value]
        return data

    def close() -> None:
        k32.CloseHandle(handle)

    def set_timeout(_timeout: Optional[float]) -> None:
        pass

    return Connection(shown, send, recv, close, set_timeout)
