"""Ticketing integrations (Jira, ServiceNow, Zendesk): vendor tickets normalized to
`TicketEvent` (contracts/events.py) from webhooks (api/routes/webhooks.py) or REST polls, and
tickets opened for sustained outages.

- `mapping.py`  how a ticket names its asset and what its status means, per provider (data)
- `config.py`   environment (webhook secrets, limits) and the YAML file (mapping, REST)
- `jira.py`, `servicenow.py`, `zendesk.py`  per vendor: webhook check, payload →
  TicketEvent, REST client (`search_updated`, `open_ticket`)
- `webhooks.py` the per-vendor pieces the webhook route uses
- `poller.py`   `bessmon tickets poll`: tickets without webhooks, and tickets opened for
  episodes that last too long without one
- `payload.py`, `signing.py`, `rest.py`  what the vendors share
"""
