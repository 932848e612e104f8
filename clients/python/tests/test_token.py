"""a365.token and a365.token_info against the real agent."""

from __future__ import annotations

import datetime
import time

import pytest

import a365
from conftest import World, agree, fp, wait_for


def test_token_is_the_one_a365_token_prints(agent: World) -> None:
    seen = agree(lambda: fp(a365.token("demo")), lambda: fp(agent.cli_token("demo")))
    assert len(set(seen)) == 1, seen


def test_no_profile_means_the_default_or_a365_profile(agent: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # "demo" is the only profile, so the default one.
    seen = agree(lambda: fp(a365.token()), lambda: fp(a365.token("demo")))
    assert len(set(seen)) == 1, seen
    monkeypatch.setenv("A365_PROFILE", "nope")
    with pytest.raises(a365.UnknownProfile):
        a365.token()


def test_token_info_says_profile_expiry_and_scopes_but_its_repr_hides_the_token(agent: World) -> None:
    info = a365.token_info("demo")
    assert info.profile == "demo"
    assert info.expires_at is not None and info.expires_at.tzinfo is not None
    left = (info.expires_at - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    # Asked valid at least 5 s (the default, as `a365 token`); tokens live 8 s.
    assert 3.5 <= left <= 9.5, left
    assert "openid" in info.scopes
    shown = repr(info) + str(info)
    hidden = info.token not in shown
    assert hidden, "the token is in the repr"


def test_an_unknown_profile_raises_unknown_profile(agent: World) -> None:
    with pytest.raises(a365.UnknownProfile) as caught:
        a365.token("nope")
    assert caught.value.kind == "unknown_profile"
    assert caught.value.exit_code == 4
    assert "nope" in str(caught.value)


def test_min_valid_longer_than_tokens_live_is_unavailable_at_once(agent: World) -> None:
    started = time.monotonic()
    with pytest.raises(a365.Unavailable) as caught:
        a365.token("demo", min_valid=30)
    assert "cannot be met" in str(caught.value), str(caught.value)
    assert caught.value.exit_code == 6
    assert time.monotonic() - started < 20
    with pytest.raises(a365.Unavailable):
        a365.token("demo", min_valid=datetime.timedelta(minutes=1))


def test_min_valid_gets_a_token_valid_that_long(agent: World) -> None:
    # Tokens live 8 s and are renewed 2 s before they expire: a token valid
    # 6.5 s more is, most of the time, one the agent fetches on demand.
    # "Refreshed on demand a moment ago" is Unavailable: ask again.
    def ask() -> a365.Token | None:
        try:
            return a365.token_info("demo", min_valid=datetime.timedelta(seconds=6.5))
        except a365.Unavailable:
            return None

    info = wait_for("a token valid 6.5 s", ask, timeout=60)
    assert info.expires_at is not None
    left = (info.expires_at - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    # expires_at is whole seconds (rounded down), and time passed since.
    assert left >= 4.5, left


def test_min_valid_must_be_a_duration(agent: World) -> None:
    with pytest.raises(ValueError):
        a365.token("demo", min_valid=-1)
    with pytest.raises(TypeError):
        a365.token("demo", min_valid="5s")  # type: ignore[arg-type]
    zero = fp(a365.token("demo", min_valid=0))
    assert zero.startswith("sha256:")


def test_refresh_gives_a_new_token(agent: World) -> None:
    before = fp(a365.token("demo"))
    message = a365.refresh("demo")
    after = fp(a365.token("demo"))
    assert "refreshed" in message, message
    assert before != after


def test_no_agent_raises_agent_not_running(agent: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A365_AGENT_SOCK", str(agent.dir / "run" / "nobody-here.sock"))
    with pytest.raises(a365.AgentNotRunning) as caught:
        a365.token("demo")
    assert caught.value.exit_code == 3
    assert "nobody-here.sock" in str(caught.value)
