"""Lockouts and throttles answer 429 with Retry-After; seed_demo never resets a real admin."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_wrong_passwords_lock_the_account_even_for_the_right_one(
    make_user: Any, client: Any, url: str
) -> None:
    make_user("victim", "admin")
    for _ in range(30):
        client.post(url, {"username": "victim", "password": "guess"})
    response = client.post(url, {"username": "victim", "password": "victim-pw"})
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= django_settings.HILAPP_LOGIN_LOCKOUT_S
    assert "_auth_user_id" not in client.session


def test_one_address_trying_many_accounts_is_locked_out(make_user: Any, client: Any) -> None:
    make_user("someone", "expert")
    for n in range(django_settings.HILAPP_LOGIN_ADDRESS_FAILURES):
        client.post("/accounts/login/", {"username": f"user{n}", "password": "x"})
    response = client.post("/accounts/login/", {"username": "someone", "password": "someone-pw"})
    assert response.status_code == 429 and response["Retry-After"]


def test_a_right_password_before_the_limit_logs_in(make_user: Any, client: Any) -> None:
    make_user("careful", "expert")
    for _ in range(django_settings.HILAPP_LOGIN_FAILURES - 1):
        client.post("/accounts/login/", {"username": "careful", "password": "typo"})
    response = client.post("/accounts/login/", {"username": "careful", "password": "careful-pw"})
    assert response.status_code == 302 and "_auth_user_id" in client.session


def test_bad_tokens_get_429_with_retry_after() -> None:
    client = APIClient()
    codes = []
    for n in range(200):
        client.credentials(HTTP_AUTHORIZATION=f"Token wrong-{n}")
        response = client.get("/api/v1/characters/")
        codes.append(response.status_code)
        if response.status_code == 429:
            break
    assert codes[-1] == 429, codes[-5:]
    assert len(codes) == django_settings.HILAPP_TOKEN_FAILURES + 1
    assert int(response["Retry-After"]) > 0


def test_role_throttle_429_with_retry_after(api: Any, settings: Any) -> None:
    settings.HILAPP_THROTTLE_RATES = {"consumer": "3/minute"}
    client = api("consumer")
    codes = [client.get("/api/v1/characters/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    response = client.get("/api/v1/characters/")
    assert response.status_code == 429 and 0 < int(response["Retry-After"]) <= 60
    assert api("expert").get("/api/v1/characters/").status_code == 200  # another role, no rate


def test_throttle_state_is_in_redis_when_redis_is_configured() -> None:
    backend = django_settings.CACHES["default"]["BACKEND"]
    if django_settings.HILAPP_REDIS_URL:
        assert backend == "django.core.cache.backends.redis.RedisCache"
        assert django_settings.CACHES["default"]["LOCATION"] == django_settings.HILAPP_REDIS_URL
    else:
        assert backend == "django.core.cache.backends.locmem.LocMemCache"


def test_seed_demo_leaves_a_real_superuser_alone(settings: Any) -> None:
    settings.IS_EMBEDDED = True
    User = get_user_model()
    User.objects.create_superuser("admin", password="the-owners-password")
    err = StringIO()
    call_command("seed_demo", stdout=StringIO(), stderr=err)
    assert User.objects.get(username="admin").check_password("the-owners-password")
    assert "admin" in err.getvalue() and "not changed" in err.getvalue()
    assert User.objects.get(username="expert1").check_password("expert1-demo")


def test_seed_demo_refuses_outside_the_embedded_mode(settings: Any) -> None:
    settings.IS_EMBEDDED = False
    with pytest.raises(CommandError, match="--force"):
        call_command("seed_demo", stdout=StringIO())
    assert not get_user_model().objects.exists()
    call_command("seed_demo", "--force", stdout=StringIO())
    assert get_user_model().objects.get(username="expert1").check_password("expert1-demo")


def test_behind_a_trusted_proxy_clients_are_told_apart(
    make_user: Any, client: Any, settings: Any
) -> None:
    settings.HILAPP_TRUSTED_PROXIES = 1
    make_user("bystander", "expert")
    attacker = {"HTTP_X_FORWARDED_FOR": "203.0.113.9", "REMOTE_ADDR": "10.0.0.1"}
    for n in range(settings.HILAPP_LOGIN_ADDRESS_FAILURES):
        client.post("/accounts/login/", {"username": f"u{n}", "password": "x"}, **attacker)
    assert (
        client.post("/accounts/login/", {"username": "u", "password": "x"}, **attacker).status_code
        == 429
    )
    bystander = {"HTTP_X_FORWARDED_FOR": "198.51.100.7", "REMOTE_ADDR": "10.0.0.1"}
    response = client.post(
        "/accounts/login/", {"username": "bystander", "password": "bystander-pw"}, **bystander
    )
    assert response.status_code == 302
