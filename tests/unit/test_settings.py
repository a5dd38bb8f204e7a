import pytest

from foundation_operator.settings import Settings, SettingsError


def test_defaults_watch_all_namespaces() -> None:
    settings = Settings.from_env({})
    assert settings.namespaces == ()
    assert settings.liveness_endpoint == "http://0.0.0.0:8080/healthz"


def test_values_come_from_prefixed_environment() -> None:
    settings = Settings.from_env(
        {
            "FOUNDATION_NAMESPACES": "a, b,,c",
            "FOUNDATION_HEALTH_PORT": "9000",
            "FOUNDATION_LOG_LEVEL": "debug",
            "FOUNDATION_LOG_FORMAT": "json",
        }
    )
    assert settings.namespaces == ("a", "b", "c")
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
