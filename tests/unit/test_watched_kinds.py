"""Every kind the operator watches for repair has a watch and a REST path."""

from foundation_operator import handlers
from foundation_operator.agents import objects
from foundation_operator.core import client, watches


def test_every_owned_kind_is_watchable_and_has_a_path() -> None:
    assert set(handlers.OWNED_KINDS) <= set(watches.KINDS)
    assert set(watches.KINDS) <= set(client.PATHS)
    # What drift repair restores is in kinds that are watched.
    assert set(objects.OWNED_FIELDS) <= set(handlers.OWNED_KINDS)


def test_the_operators_watches_are_built_for_every_kind_it_names() -> None:
    """Each watch the operator starts with (members, spares, runners, the shared runner's
    Deployment, owned objects) names a kind it knows: none fails the operator's start."""
    from types import SimpleNamespace

    made = handlers.watches(
        SimpleNamespace(api=None),
        SimpleNamespace(namespaces=["a"]),
        SimpleNamespace(observe_pod=print, observe_spare=print, observe_owned=print),
        SimpleNamespace(observe_pod=print, observe_shared_runner=print),
    )
    kinds = {(w.kind.kind, w.selector) for w in made}
    assert ("Deployment", "app.kubernetes.io/name=foundation-shared-runner") in kinds
    assert ("Pod", objects.SPARE_LABEL) in kinds
