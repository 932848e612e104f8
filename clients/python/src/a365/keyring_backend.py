"""A backend for the keyring package: the current token of an a365 profile
as the password of service "a365", user PROFILE:

    keyring.get_password("a365", "work")     # profile "work"
    keyring.get_password("a365", "")         # $A365_PROFILE or the default profile

Installing the package registers it (entry point `keyring.backends`) at a
low priority: keyring's chainer asks it after the OS keyring, and it
answers service "a365" only (None for any other), so it takes nothing
over. To use it alone: PYTHON_KEYRING_BACKEND=a365.keyring_backend.Keyring.

An unknown profile is "no such password" (None). An agent that is not
running, not ours, or cannot give a token (a dead credential, the token
server down) raises AgentUnavailableError, a keyring.errors.KeyringError:
not the same as no password. The agent owns the secrets: set_password and
delete_password raise.
"""

from __future__ import annotations

from typing import Optional

from keyring.backend import KeyringBackend
from keyring.compat import properties
from keyring.credentials import Credential, SimpleCredential
from keyring.errors import KeyringError, PasswordDeleteError, PasswordSetError

from . import A365Error, UnknownProfile, token_info

#: The one service this backend answers.
SERVICE = "a365"


class AgentUnavailableError(KeyringError):
    """The agent could not be asked, or could not give a token (the
    message says why; never a token)."""

    def __init__(self, error: A365Error) -> None:
        super().__init__(f"a365: {error}")
        self.error = error


class _NotOurService(PasswordSetError, PasswordDeleteError, NotImplementedError):
    """Another service than "a365": keyring's chainer goes on to the next
    backend (it skips NotImplementedError)."""


class Keyring(KeyringBackend):
    """Tokens from a365-agent: service "a365", user = profile name (empty:
    `$A365_PROFILE` or the agent's default profile)."""

    @properties.classproperty
    def priority(cls) -> float:
        # Viable everywhere, and below the OS keyrings (SecretService 5,
        # macOS 5, Windows 5): chained after them, chosen alone only where
        # no other backend is viable.
        return 1

    def _info(self, username: Optional[str]) -> Optional[SimpleCredential]:
        try:
            info = token_info(username or None)
        except UnknownProfile:
            return None
        except A365Error as e:
            raise AgentUnavailableError(e) from None
        return SimpleCredential(info.profile, info.token)

    def get_password(self, service: str, username: str) -> Optional[str]:
        if service != SERVICE:
            return None
        credential = self._info(username)
        return credential.password if credential is not None else None

    def get_credential(self, service: str, username: Optional[str]) -> Optional[Credential]:
        """With no username: the default profile's token, its name as the
        username."""
        if service != SERVICE:
            return None
        return self._info(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        if service != SERVICE:
            raise _NotOurService(f"the a365 backend keeps no passwords (service {service!r})")
        raise PasswordSetError(
            "a365 tokens come from a365-agent, which keeps the credentials: add or update a "
            "profile with `a365 add` (or `a365 add --update-secret`)"
        )

    def delete_password(self, service: str, username: str) -> None:
        if service != SERVICE:
            raise _NotOurService(f"the a365 backend keeps no passwords (service {service!r})")
        raise PasswordDeleteError(
            "a365 tokens come from a365-agent, which keeps the credentials: remove a profile "
            "with `a365 remove`"
        )
