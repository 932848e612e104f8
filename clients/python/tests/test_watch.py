"""a365.watch: events as they happen, from one connection."""

from __future__ import annotations

import datetime
import queue
import threading
from typing import Union

import pytest

import a365
from conftest import World


def _next_in_thread(events: a365.Watch) -> "queue.Queue[Union[a365.Event, BaseException, None]]":
    """Reads the next events in a thread, so a test waits with a timeout."""
    out: "queue.Queue[Union[a365.Event, BaseException, None]]" = queue.Queue()

    def read() -> None:
        try:
            for event in events:
                out.put(event)
            out.put(None)
        except BaseException as e:  # noqa: BLE001 (handed to the test)
            out.put(e)

    threading.Thread(target=read, daemon=True).start()
    return out


def test_watch_yields_refreshed_after_a365_refresh(agent: World) -> None:
    with a365.watch("demo") as events:
        # Subscribed on return: the refresh below is seen.
        got = _next_in_thread(events)
        agent.run("a365", "refresh", "demo")
        event = got.get(timeout=60)
        assert isinstance(event, a365.Event), event
        assert event.profile == "demo"
        assert event.kind == "refreshed"
        assert event.expires_at is not None
        assert event.expires_at > datetime.datetime.now(datetime.timezone.utc)
    # Closing ends the reading thread's iteration.
    rest = []
    while True:
        item = got.get(timeout=30)
        if item is None:
            break
        rest.append(item)
    assert all(isinstance(e, a365.Event) for e in rest), rest


def test_watch_of_every_profile(agent: World) -> None:
    events = a365.watch()
    try:
        got = _next_in_thread(events)
        a365.refresh("demo")
        event = got.get(timeout=60)
        assert isinstance(event, a365.Event), event
        assert event.profile == "demo"
    finally:
        events.close()


def test_watch_of_an_unknown_profile_raises_at_once(agent: World) -> None:
    with pytest.raises(a365.UnknownProfile):
        a365.watch("nope")
