"""`manage.py export_roles --account ID_OR_ALIAS --format cloudformation` (SPEC §3.2): the
account's roles as a CloudFormation template (JSON) on standard output."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from federation.provisioning.export import cloudformation_template
from federation.refusals import Refused


class Command(BaseCommand):
    help = "Print one account's roles as a CloudFormation template."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", required=True, metavar="ID_OR_ALIAS")
        parser.add_argument("--format", required=True, choices=["cloudformation"])

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            template = cloudformation_template(options["account"])
        except Refused as refusal:
            raise CommandError(refusal.message) from refusal
        self.stdout.write(json.dumps(template, indent=2))
