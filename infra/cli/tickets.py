"""`bessmon tickets poll`: tickets kept in sync without webhooks — every provider with a REST
connection in `BESSMON_TICKETING_FILE` searched for updated tickets, published to
`bess.tickets.raw`, and tickets opened for long unavailability episodes
(connectors/ticketing/poller.py). `bessmon up` starts it when such a file is configured."""

from __future__ import annotations

import argparse

from connectors.settings import Settings


def cmd_poll(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.ticketing.poller import run_poller
    from infra.cli.common import setup_logging

    setup_logging(args.verbose)
    return run_poller(settings, base_url=args.base_url, once=args.once)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tickets = sub.add_parser("tickets", help="ticketing without webhooks: poll, auto-open")
    tickets_sub = tickets.add_subparsers(dest="tickets_command", required=True,
                                         metavar="ACTION")
    poll = tickets_sub.add_parser(
        "poll", help="poll Jira / ServiceNow / Zendesk for updated tickets and open tickets "
                     "for long episodes (`bessmon up` starts it when configured)")
    poll.add_argument("--base-url", help="the dashboard's address for the links in opened "
                                         "tickets (default BESSMON_PUBLIC_URL, else "
                                         "http://<api host>:<api port>/)")
    poll.add_argument("--once", action="store_true",
                      help="one search (and auto-open) per provider, then exit (1 if any "
                           "failed)")
    poll.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    poll.set_defaults(run=cmd_poll)
