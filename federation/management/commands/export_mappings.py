"""`manage.py export_mappings`: print the mapping tables as a canonical YAML mapping file.

Importing the output back is a no-op (SPEC §3.3).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from federation.mappings import dump_document_yaml


class Command(BaseCommand):
    help = "Print the mapping tables as a YAML mapping file (import it back: no changes)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(dump_document_yaml(), ending="")
