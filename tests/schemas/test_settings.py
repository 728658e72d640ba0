"""The settings class: http(s) webhooks only, production refuses weak passwords, and the
connection URLs' passwords never show in repr, str, model_dump or validation errors."""

from __future__ import annotations

import pydantic
import pytest

from schemas.settings import Settings, get_settings, hide_password

STRONG = "4f9c2d7e8a1b3c5d6e7f8091a2b3c4d5"
DATABASE = f"postgresql+psycopg://triage:{STRONG}@postgres:5432/triage"
REDIS = f"redis://:{STRONG[::-1]}@redis:6379/0"


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.org/x", "gopher://x", "example.org/hook", "http://"],
)
def test_the_webhook_must_be_http_or_https(url: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="http:// or https://") as refused:
        Settings(notify_url=url)
    assert "input_value" not in str(refused.value)  # the URL may hold a token: not echoed


def test_http_and_https_webhooks_are_taken_and_an_empty_one_is_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(notify_url="https://pager.example.org/triage").notify_url
    assert Settings(notify_url="http://127.0.0.1:8080/hook").notify_url
    monkeypatch.setenv("TRIAGE_NOTIFY_URL", "")
    get_settings.cache_clear()
    assert get_settings().notify_url is None


@pytest.mark.parametrize(
    ("database_url", "redis_url", "message"),
    [
        (DATABASE.replace(STRONG, "change-me-postgres"), REDIS, "TRIAGE_DATABASE_URL: it is the"),
        (DATABASE, "redis://:change-me-redis@redis:6379/0", "TRIAGE_REDIS_URL: it is the"),
        (DATABASE.replace(STRONG, "hunter2hunter2"), REDIS, "shorter than 16"),
        (DATABASE, "redis://:@redis:6379/0", "TRIAGE_REDIS_URL: it is shorter"),
        (None, REDIS, "needs TRIAGE_DATABASE_URL"),
    ],
)
def test_production_refuses_placeholder_short_and_missing_credentials(
    database_url: str | None, redis_url: str, message: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match=message) as refused:
        Settings(environment="production", database_url=database_url, redis_url=redis_url)
    text = str(refused.value)
    assert "change-me" not in text and "hunter2" not in text and STRONG[::-1] not in text


def test_production_takes_strong_passwords_and_passwordless_urls() -> None:
    settings = Settings(environment="production", database_url=DATABASE, redis_url=REDIS)
    assert settings.resolved_database_url == DATABASE and settings.redis_url == REDIS
    socket_auth = Settings(
        environment="production",
        database_url="postgresql+psycopg:///triage?host=/run/postgresql",
        redis_url="rediss://redis.internal:6380/0",
    )
    assert socket_auth.environment == "production"
    assert Settings(database_url="sqlite:///x.db", redis_url="redis://:short@h/0").redis_url


def test_fhir_password_and_webhook_token_never_show() -> None:
    settings = Settings(
        fhir_url="https://triage:FHIRSECRETPW@fhir.hospital/base",
        notify_url="https://hooks.example/services/T1/TOKENPATH?key=TOKENQUERY",
    )
    dumped = settings.model_dump()
    assert dumped["fhir_url"] == "https://triage:***@fhir.hospital/base"
    assert dumped["notify_url"] == "https://hooks.example/***"
    shown = [repr(settings), str(settings), str(dumped), settings.model_dump_json()]
    for secret in ("FHIRSECRETPW", "TOKENPATH", "TOKENQUERY"):
        assert not any(secret in text for text in shown), secret
    assert "FHIRSECRETPW" in settings.fhir_url  # what the sender uses is unchanged


def test_passwords_never_show_in_repr_str_or_dumps() -> None:
    settings = Settings(database_url=DATABASE, redis_url=REDIS, notify_url="https://h/t/SECRET")
    dumped = settings.model_dump()
    assert dumped["database_url"] == "postgresql+psycopg://triage:***@postgres:5432/triage"
    assert dumped["redis_url"] == "redis://:***@redis:6379/0"
    for shown in (repr(settings), str(settings), str(dumped), settings.model_dump_json()):
        assert STRONG not in shown and STRONG[::-1] not in shown
    assert "SECRET" not in repr(settings) + str(settings)
    assert settings.database_url == DATABASE  # what the ledger connects with is unchanged


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw@h:1/0", "redis://user:***@h:1/0"),
        ("postgresql://u:p%40ss@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("redis+socket:///data/redis.socket", "redis+socket:///data/redis.socket"),
        (None, None),
    ],
)
def test_hide_password(url: str | None, shown: str | None) -> None:
    assert hide_password(url) == shown


def test_retention_settings_default_to_thirty_days_of_pixels_and_results_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings()
    assert (settings.keep_pixels_days, settings.keep_results_days) == (30, None)
    monkeypatch.setenv("TRIAGE_KEEP_RESULTS_DAYS", "0")
    with pytest.raises(ValueError, match="keep_results_days"):
        Settings()
