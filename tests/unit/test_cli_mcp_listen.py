"""`foundation mcp --listen` on an address other machines reach is refused unless the user
says they mean it (issue 26): the endpoint asks no one who they are and acts with the user's
kubeconfig. The refusal comes before any kubeconfig is read."""

from __future__ import annotations

import pytest

from foundation_cli.main import loopback, main


def test_loopback_addresses_are_told_apart() -> None:
    for host in ("127.0.0.1", "127.8.0.1", "localhost", "::1", "[::1]"):
        assert loopback(host), host
    for host in ("0.0.0.0", "10.244.0.1", "::", "example.com", "my-laptop"):
        assert not loopback(host), host


@pytest.mark.parametrize("listen", ["0.0.0.0:8765", "10.244.0.1:8765", "[::]:8765"])
def test_a_non_loopback_listen_is_refused_and_says_why(listen: str, capsys, tmp_path) -> None:
    missing = str(tmp_path / "no-kubeconfig")
    with pytest.raises(SystemExit) as exited:
        main(["--kubeconfig", missing, "mcp", "--agent", "tally", "--listen", listen])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"--listen {listen}: not a loopback address" in error
    assert "act with your kubeconfig's rights" in error
    assert "--unauthenticated-non-loopback" in error
