import pytest

from foundation_operator.settings import Settings, SettingsError


def test_defaults_watch_all_namespaces() -> None:
    settings = Settings.from_env({})
    assert settings.namespaces == ()
    assert (settings.health_host, settings.health_port) == ("0.0.0.0", 8080)
    assert settings.leader_election is True


def test_lease_timings_follow_client_go_ratios_and_satisfy_the_election() -> None:
    default = Settings.from_env({})
    assert (default.renew_deadline_seconds, default.retry_period_seconds) == (10, 2)
    short = Settings.from_env({"FOUNDATION_LEASE_DURATION_SECONDS": "2"})
    # kubernetes_asyncio's election refuses renewDeadline <= 1.2 x retryPeriod.
    assert short.renew_deadline_seconds > 1.2 * short.retry_period_seconds >= 1.2


def test_lease_namespace_is_explicit_or_the_pods_own(tmp_path) -> None:
    own = tmp_path / "namespace"
    own.write_text("foundation-system\n")
    assert Settings.from_env({}).lease_namespace_or_own(str(own)) == "foundation-system"
    assert Settings.from_env({}).lease_namespace_or_own(str(tmp_path / "none")) == "default"
    explicit = Settings.from_env({"FOUNDATION_LEASE_NAMESPACE": "ops"})
    assert explicit.lease_namespace_or_own(str(own)) == "ops"


def test_values_come_from_prefixed_environment() -> None:
    settings = Settings.from_env(
        {
            "FOUNDATION_NAMESPACES": "a, b,,c",
            "FOUNDATION_EXCLUDED_NAMESPACES": "foundation-demo",
            "FOUNDATION_HEALTH_PORT": "9000",
            "FOUNDATION_LOG_LEVEL": "debug",
            "FOUNDATION_LOG_FORMAT": "json",
        }
    )
    assert settings.namespaces == ("a", "b", "c")
    assert settings.excluded_namespaces == ("foundation-demo",)
    assert settings.health_port == 9000
    assert settings.log_level == "DEBUG"
    assert settings.log_format == "json"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FOUNDATION_HEALTH_PORT", "70000"),
        ("FOUNDATION_LOG_FORMAT", "xml"),
        ("FOUNDATION_METRICS_PORT", "port"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
