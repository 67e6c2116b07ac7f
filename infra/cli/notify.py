"""`bessmon notify run`: the notifier — alarms and alerts routed by the notification rules
(`BESSMON_NOTIFY_RULES`) into the outbox, sent by e-mail (`BESSMON_SMTP_URL`) and webhooks
(connectors/notify/service.py, docs/notifications.md). `bessmon up --notify-rules FILE`
starts it."""

from __future__ import annotations

import argparse

from connectors.settings import Settings


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from connectors import metrics
    from connectors.notify.service import run_notifier
    from infra.cli.common import setup_logging

    setup_logging()
    with metrics.exposed(settings, "notify"):
        return run_notifier(settings, base_url=args.base_url)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    notify = sub.add_parser("notify", help="the notifier: alarms to e-mail and webhooks")
    notify_sub = notify.add_subparsers(dest="notify_command", required=True, metavar="ACTION")
    run = notify_sub.add_parser("run", help="run the notifier (`bessmon up --notify-rules` "
                                            "starts it)")
    run.add_argument("--base-url", help="the dashboard's address, for the links in messages "
                                        "(default http://<api host>:<api port>/)")
    run.set_defaults(run=cmd_run)
