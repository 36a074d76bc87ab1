"""Demo accounts: ``admin`` and experts ``expert1..3`` (and a consumer). Idempotent."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from hilapp.roles import CONSUMERS, EXPERTS, add_to_role

DEMO_USERS = [
    ("admin", "admin-demo", None, True),
    ("expert1", "expert1-demo", EXPERTS, False),
    ("expert2", "expert2-demo", EXPERTS, False),
    ("expert3", "expert3-demo", EXPERTS, False),
    ("consumer1", "consumer1-demo", CONSUMERS, False),
]


class Command(BaseCommand):
    help = "Create (or reset) the demo accounts and print their credentials."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        for username, password, group, is_admin in DEMO_USERS:
            user, _ = User.objects.get_or_create(username=username)
            user.set_password(password)
            user.is_staff = user.is_superuser = is_admin
            user.save()
            if group:
                add_to_role(user, group)
            token, _ = Token.objects.get_or_create(user=user)
            role = "admin" if is_admin else group
            self.stdout.write(
                f"  {username:<10} password {password:<15} ({role}; token {token.key})"
            )
