import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from synthesis.services.progress import pipeline_status


class Command(BaseCommand):
    help = "Counts per kind and status (characters, stories, frames, review items)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        status = pipeline_status()
        if options["json"]:
            self.stdout.write(json.dumps(status, sort_keys=True))
            return
        for kind, counts in status.items():
            total = sum(counts.values())
            detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
            self.stdout.write(f"{kind:<11} {total:>7}  {detail}")
