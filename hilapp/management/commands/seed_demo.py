"""Demo accounts: ``admin`` and experts ``expert1..3`` (and a consumer). Idempotent.

The passwords are well known (they are printed below and in the docs), so:

- they are set only in the embedded mode (SQLite and the filesystem broker, a machine of one's
  own) unless ``--force`` says otherwise;
- an existing superuser or staff account that is not one of ours (no ``demo`` marker in its
  last name) is never given a demo password, ``--force`` or not: the command says so and
  leaves it alone.

Each run issues new API tokens for the demo accounts and prints them (only digests are kept).
"""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hilapp.roles import CONSUMERS, EXPERTS, add_to_role
from hilapp.tokens import token_issue

DEMO_MARKER = "hilapp demo account"
DEMO_USERS = [
    ("admin", "admin-demo", None, True),
    ("expert1", "expert1-demo", EXPERTS, False),
    ("expert2", "expert2-demo", EXPERTS, False),
    ("expert3", "expert3-demo", EXPERTS, False),
    ("consumer1", "consumer1-demo", CONSUMERS, False),
]


class Command(BaseCommand):
    help = "Create (or reset) the demo accounts and print their credentials (embedded mode)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="set the demo passwords outside the embedded mode too (never on an existing "
            "administrator that is not a demo account)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not (settings.IS_EMBEDDED or options["force"]):
            raise CommandError(
                "seed_demo sets well-known passwords; this is not the embedded mode "
                "(DATABASE_URL or CELERY_BROKER_URL is set). Pass --force if you mean it."
            )
        User = get_user_model()
        for username, password, group, is_admin in DEMO_USERS:
            user = User.objects.filter(username=username).first()
            if user is not None and self._foreign_admin(user, password):
                self.stderr.write(
                    f"  {username:<10} left alone: an existing administrator that is not a demo "
                    "account; its password was not changed"
                )
                continue
            if user is None:
                user = User(username=username)
            user.set_password(password)
            user.last_name = DEMO_MARKER
            user.is_staff = user.is_superuser = is_admin
            user.save()
            if group:
                add_to_role(user, group)
            role = "admin" if is_admin else group
            self.stdout.write(
                f"  {username:<10} password {password:<15} ({role}; token {token_issue(user)})"
            )

    @staticmethod
    def _foreign_admin(user: Any, demo_password: str) -> bool:
        """An administrator someone else made: not marked as ours, and not carrying the demo
        password already (as the accounts of older versions of this command do)."""
        if not (user.is_superuser or user.is_staff) or user.last_name == DEMO_MARKER:
            return False
        return not user.check_password(demo_password)
