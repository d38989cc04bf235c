"""`manage.py roles_apply [--account ID_OR_ALIAS ...] [--yes]`, `roles_apply --resume ROLLOUT` and
`roles_apply --rollback ROLLOUT [--yes]` (SPEC §3.2): apply the roles plan in waves (canary, dev,
test, prod), reading each wave back and stopping at the first wave that fails; or re-apply the
documents each account had before a rollout. Prints the rollout id; exit 1 when it stopped.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from federation.audit.chain import cli_actor
from federation.models import Rollout
from federation.provisioning.apply import resume_rollout, run_rollout, start_rollout
from federation.provisioning.plan import plan_roles, render_text
from federation.provisioning.rollback import plan_rollback, store_rollback
from federation.refusals import Refused


class Command(BaseCommand):
    help = "Create, change and delete the IAM roles the mapping tables call for, in waves."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", action="append", default=[], metavar="ID_OR_ALIAS")
        parser.add_argument("--yes", action="store_true", help="apply without asking")
        parser.add_argument("--resume", type=int, metavar="ROLLOUT", help="continue a rollout")
        parser.add_argument(
            "--rollback",
            type=int,
            metavar="ROLLOUT",
            help="re-apply the documents each account had before ROLLOUT",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["resume"] is not None:
                rollout = resume_rollout(options["resume"], actor=cli_actor(), now=timezone.now())
            elif options["rollback"] is not None:
                if options["account"]:
                    raise CommandError("--rollback rolls back every account the rollout touched")
                rollback = plan_rollback(options["rollback"])
                self.stdout.write(rollback.text, ending="")
                if not options["yes"]:
                    self._confirm("Roll these accounts back in waves?")
                rollout = store_rollback(rollback, actor=cli_actor(), now=timezone.now())
                rollout = run_rollout(rollout, actor=cli_actor(), now=timezone.now())
            else:
                if not options["yes"]:
                    plan = plan_roles(options["account"])
                    self.stdout.write(render_text(plan), ending="")
                    if not plan.pending:
                        self.stdout.write("Nothing to apply.")
                        return
                    self._confirm("Apply these changes in waves?")
                started = start_rollout(options["account"], actor=cli_actor(), now=timezone.now())
                if started is None:
                    self.stdout.write("Nothing to apply: every account is in sync.")
                    return
                rollout = started
        except Refused as refusal:
            raise CommandError(refusal.message) from refusal
        for step in rollout.steps.order_by("wave", "account_id"):
            line = f"  {step.wave_name:6} {step.account_id} ({step.account_alias}): {step.state}"
            self.stdout.write(line + (f": {step.error}" if step.error else ""))
        self.stdout.write(f"rollout {rollout.pk}: {rollout.state}")
        if rollout.state != Rollout.State.DONE:
            raise CommandError(
                f"rollout {rollout.pk} stopped: {rollout.stopped_reason}. Fix the cause, then run "
                f"`manage.py roles_apply --resume {rollout.pk}`."
            )

    def _confirm(self, question: str) -> None:
        try:
            answer = input(f"{question} [y/N] ")
        except (EOFError, OSError):  # no terminal (CI, cron): never a yes
            answer = ""
        if answer.strip().lower() != "y":
            raise CommandError("not applied (answer y, or pass --yes)")
