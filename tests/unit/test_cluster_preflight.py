"""`cluster up` refuses clearly when the machine cannot run pods, instead of degrading."""

import pytest

import localcluster.__main__ as cli


def test_missing_tools_and_cgroups_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.shutil, "which", lambda tool: None if tool == "nsenter" else "/bin/x")
    monkeypatch.setattr(cli.cgroups, "available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        cli.preflight()
    message = str(exc.value)
    assert "cannot run pods on this machine" in message
    assert "`nsenter` is not installed" in message
    assert "pids controller is not mounted" in message


def test_non_root_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit, match="must run as root"):
        cli.preflight()
