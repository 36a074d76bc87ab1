"""API tokens, hashed at rest and shown once.

DRF's ``authtoken`` stores the key itself, so anyone who reads the database (a backup, the
Django admin, a debug page) can act as every API client. Here the table keeps only a digest
of each token: ``token_issue`` makes a random token, stores its digest and returns the token
once, to print. ``HashedTokenAuthentication`` digests the presented token and looks that up.

The digest is BLAKE2b (19 bytes) behind a ``h$`` prefix, 40 characters, so it fits DRF's
``Token.key`` column unchanged; a random 256-bit token needs no salt or slow hash (nothing to
guess by brute force), and the prefix tells a digest from a key stored by an older version
(``hilapp/migrations/0001_hash_api_tokens`` digests those in place, so clients keep working).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.db.models.signals import pre_save
from django.dispatch import receiver
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.request import Request

from hilapp.lockouts import token_failure_record, token_lock_remaining

DIGEST_PREFIX = "h$"
MAX_TOKEN_CHARS = 128


def token_digest(raw: str) -> str:
    return DIGEST_PREFIX + hashlib.blake2b(raw.encode(), digest_size=19).hexdigest()


def is_digest(key: str) -> bool:
    return key.startswith(DIGEST_PREFIX)


def token_issue(user: Any) -> str:
    """A new token for ``user`` (replacing any old one); the only time it can be read."""
    raw = secrets.token_urlsafe(32)
    Token.objects.filter(user=user).delete()
    Token.objects.create(user=user, key=token_digest(raw))
    return raw


@receiver(pre_save, sender=Token)
def _never_store_a_plain_key(sender: Any, instance: Token, **kwargs: Any) -> None:
    """A token made elsewhere (``drf_create_token``, the admin) is stored as a digest too; its
    plain key is then lost, so such a token must be issued again with ``issue_token``."""
    if not instance.key:
        instance.key = instance.generate_key()
    if not is_digest(instance.key):
        instance.key = token_digest(instance.key)


class HashedTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <token>``, checked against the stored digests. A client address
    that sends too many wrong tokens is answered 429 for a while (``HILAPP_TOKEN_FAILURES``)."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        self._request = request
        return super().authenticate(request)

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        request = self._request
        wait = token_lock_remaining(request)
        if wait:
            raise Throttled(wait=wait, detail="Too many invalid tokens from this address.")
        if not key or len(key) > MAX_TOKEN_CHARS or "\x00" in key:
            token_failure_record(request)
            raise AuthenticationFailed("Invalid token.")
        try:
            token = Token.objects.select_related("user").get(key=token_digest(key))
        except Token.DoesNotExist:
            token_failure_record(request)
            raise AuthenticationFailed("Invalid token.") from None
        if not token.user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        return token.user, token
