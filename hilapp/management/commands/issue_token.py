"""``manage.py issue_token USER``: a new API token for USER, printed once (replaces any old one).

Only a digest is stored (``hilapp.tokens``), so a lost token cannot be shown again: issue a
new one.
"""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hilapp.tokens import token_issue


class Command(BaseCommand):
    help = "Issue a new API token for a user and print it once (the old token stops working)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        name = options["username"]
        if "\x00" in name or len(name) > 150:
            raise CommandError("a username has at most 150 characters and no NUL")
        try:
            user = User.objects.get(username=name)
        except User.DoesNotExist:
            raise CommandError(f"no user {name!r}") from None
        self.stdout.write(token_issue(user))
