"""Who may ask for a reload over the ops endpoint: ``reload_allowed``."""

from __future__ import annotations

import pytest

from tradebus.daemon.ops import reload_allowed


@pytest.mark.parametrize("remote", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_loopback_may_reload_with_or_without_a_token(remote: str) -> None:
    assert reload_allowed(remote, token=False)
    assert reload_allowed(remote, token=True)


@pytest.mark.parametrize("remote", ["10.0.0.7", "192.168.1.2", "2001:db8::1", "", None])
def test_beyond_loopback_only_with_a_token(remote: str | None) -> None:
    """Without a token nobody checked the caller: refused. With one, bearer already has."""
    assert not reload_allowed(remote, token=False)
    assert reload_allowed(remote, token=True)
