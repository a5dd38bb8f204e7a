"""Every kind the operator watches for repair has a watch and a REST path."""

from foundation_operator import handlers
from foundation_operator.agents import objects
from foundation_operator.core import client, watches


def test_every_owned_kind_is_watchable_and_has_a_path() -> None:
    assert set(handlers.OWNED_KINDS) <= set(watches.KINDS)
    assert set(watches.KINDS) <= set(client.PATHS)
    # What drift repair restores is in kinds that are watched.
    assert set(objects.OWNED_FIELDS) <= set(handlers.OWNED_KINDS)
