"""The project app: connects the token and login signal receivers at start-up."""

from django.apps import AppConfig


class HilappConfig(AppConfig):
    name = "hilapp"
    verbose_name = "hilapp"

    def ready(self) -> None:
        # Signal receivers: digest every stored API token; count failed logins.
        from hilapp import lockouts, tokens  # noqa: F401
