"""The keyring backend: keyring.get_password("a365", PROFILE)."""

from __future__ import annotations

from typing import Dict, Iterator

import keyring
import keyring.backend
import keyring.errors
import pytest

import a365
from a365.keyring_backend import AgentUnavailableError, Keyring
from conftest import World, agree, fp, python


@pytest.fixture
def backend(agent: World) -> Iterator[Keyring]:
    before = keyring.get_keyring()
    ours = Keyring()
    keyring.set_keyring(ours)
    yield ours
    keyring.set_keyring(before)


def test_get_password_is_the_current_token(backend: Keyring) -> None:
    seen = agree(lambda: fp(keyring.get_password("a365", "demo")), lambda: fp(a365.token("demo")))
    assert len(set(seen)) == 1, seen


def test_an_empty_user_is_the_default_profile(backend: Keyring) -> None:
    seen = agree(lambda: fp(keyring.get_password("a365", "")), lambda: fp(a365.token("demo")))
    assert len(set(seen)) == 1, seen
    credential = keyring.get_credential("a365", None)
    assert credential is not None and credential.username == "demo"


def test_other_services_and_unknown_profiles_have_no_password(backend: Keyring) -> None:
    # Fingerprints first: a failed assert shows its values.
    other = fp(keyring.get_password("pypi", "demo"))
    unknown = fp(keyring.get_password("a365", "nope"))
    assert other == "None"
    assert unknown == "None"
    assert keyring.get_credential("other", None) is None


def test_passwords_cannot_be_set_or_deleted(backend: Keyring) -> None:
    with pytest.raises(keyring.errors.PasswordSetError, match="a365 add"):
        keyring.set_password("a365", "demo", "x")
    with pytest.raises(keyring.errors.PasswordDeleteError, match="a365 remove"):
        keyring.delete_password("a365", "demo")
    # Another service: refused too, as NotImplementedError (keyring's chainer
    # then asks the next backend).
    with pytest.raises(NotImplementedError):
        keyring.set_password("other", "user", "x")


def test_no_agent_is_a_keyring_error_not_no_password(backend: Keyring, monkeypatch: pytest.MonkeyPatch, agent: World) -> None:
    monkeypatch.setenv("A365_AGENT_SOCK", str(agent.dir / "run" / "nobody-here.sock"))
    with pytest.raises(keyring.errors.KeyringError) as caught:
        keyring.get_password("a365", "demo")
    assert isinstance(caught.value, AgentUnavailableError)
    assert isinstance(caught.value.error, a365.AgentNotRunning)


# Prints the backend keyring chose and the fingerprint of the password:
# never the token.
_CHILD = """
import hashlib, sys, keyring, keyring.backend
from a365.keyring_backend import Keyring
password = keyring.get_password("a365", "demo")
print(type(keyring.get_keyring()).__module__ + "." + type(keyring.get_keyring()).__name__)
print("None" if password is None else "sha256:" + hashlib.sha256(password.encode()).hexdigest()[:16])
print(any(isinstance(k, Keyring) for k in keyring.backend.get_all_keyring()))
"""


def _child_env(world: World, **extra: str) -> Dict[str, str]:
    env = dict(world.env)
    env.update(extra)
    return env


def test_python_keyring_backend_selects_it_alone(agent: World) -> None:
    env = _child_env(agent, PYTHON_KEYRING_BACKEND="a365.keyring_backend.Keyring")

    def child() -> str:
        out = python("-c", _CHILD, env=env)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.split()
        assert lines[0] == "a365.keyring_backend.Keyring", lines
        return lines[1]

    seen = agree(child, lambda: fp(a365.token("demo")))
    assert seen[0] == seen[1] and seen[0] != "None", seen


def test_the_entry_point_registers_it_for_keyrings_own_choice(agent: World) -> None:
    # No PYTHON_KEYRING_BACKEND and no keyringrc.cfg (XDG_CONFIG_HOME is the
    # world's): keyring finds the backend through the package's entry point
    # and, with no D-Bus session here, chooses it or chains it.
    env = _child_env(agent)
    out = python("-c", _CHILD, env=env)
    assert out.returncode == 0, out.stderr
    chosen, password, registered = out.stdout.split()
    assert registered == "True"
    assert chosen in ("a365.keyring_backend.Keyring", "keyring.backends.chainer.ChainerBackend"), chosen
    assert password.startswith("sha256:"), password
