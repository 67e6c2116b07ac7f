"""How a vendor's ticket becomes a `TicketEvent`: which asset it is about and what its status
means — data, per provider, validated like every input file (connectors/ticketing/config.py
reads it from YAML; every key below has a per-vendor default, so a provider section may be
left out or name only what differs):

```yaml
jira:
  asset:
    field: customfield_10042       # a field whose value names the asset (text, option, list)
    label_prefix: "asset:"         # or a label "asset:nordvik-u02"
    table: {"Nordvik Unit 2": nordvik-u02}   # field values / label suffixes → asset ids
  statuses: {"Waiting for vendor": in_progress}   # by status name; wins over the category
  status_categories: {new: open, indeterminate: in_progress, done: resolved}
servicenow:
  asset:
    field: cmdb_ci                 # the CI: its sys_id or display value, through `table`
    table: {3f1c2a9e1b7d4c10a3b5e6f7a8b9c0d1: nordvik-u01}
    table_only: true               # a CI that is not in the table names no asset
  statuses: {"4": in_progress}     # incident `state` codes (or labels) → status
zendesk:
  asset: {field: "360012345678", label_prefix: "asset_"}   # custom field id, tag prefix
  exclusions: {"Grid outage": grid_outage, "Customer instruction": customer_request}
```

`exclusions` maps ticket categories (as the vendor names them, without regard to case) to
exclusion categories: a ticket of such a category proposes an exclusion window by itself
(api/routes/exclusions.py `propose_from_ticket`, docs/exclusions.md).

An asset is looked for in the field first, then in the labels (Jira labels, Zendesk tags);
among a source's values (in the order the vendor lists them) the first one in `table` is
used, else the first value as the asset id itself — unless `table_only`.

Statuses are matched without regard to case; a status nobody mapped is refused
(`UnmappedValue`), never guessed. Priority and category are passed through as the vendor
names them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.ticketing.payload import UnmappedValue, dig, raw
from contracts.events import Cause, TicketStatus

NonEmpty = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AssetMapping(_Model):
    field: NonEmpty | None = None
    label_prefix: NonEmpty | None = None
    table: dict[str, NonEmpty] = Field(default_factory=dict)
    table_only: bool = False

    @model_validator(mode="after")
    def _somewhere(self) -> AssetMapping:
        if self.field is None and self.label_prefix is None:
            raise ValueError("name a `field` or a `label_prefix` (or both): where tickets "
                             "name their asset")
        if self.table_only and not self.table:
            raise ValueError("`table_only` needs a `table`")
        return self

    def resolve(self, field_values: Iterable[str], labels: Iterable[str]) -> str | None:
        """The asset named by the field, else by the labels with the prefix; within each,
        a value in the table wins over one taken as it is (a CI reference carries a name and
        a sys_id: whichever the table knows); None when neither names one."""
        suffixes = [label[len(self.label_prefix):] for label in labels
                    if label.startswith(self.label_prefix)] if self.label_prefix else []
        for values in (list(field_values), suffixes):
            values = [v.strip() for v in values if v.strip()]
            found = next((self.table[v] for v in values if v in self.table), None)
            if found is None and values and not self.table_only:
                found = values[0]
            if found is not None:
                return found
        return None

    def vendor_value(self, asset_id: str) -> str:
        """What to write into the field when opening a ticket: the table's key for the asset
        (a CI sys_id, an option value), else the asset id itself."""
        return next((k for k, v in self.table.items() if v == asset_id), asset_id)


class TicketMapping(_Model):
    """A provider's mapping; `None` fields take the vendor's default (see `defaults`)."""

    asset: AssetMapping | None = None
    statuses: dict[str, TicketStatus] = Field(default_factory=dict)
    status_categories: dict[str, TicketStatus] = Field(default_factory=dict)
    # The ticket's page for people, `{…}` filled from the ticket (Jira/Zendesk: derived from
    # the payload when unset; ServiceNow: from the instance's base URL when one is known).
    ticket_url: str | None = None
    # Ticket categories (as the vendor names them, matched without regard to case) → the
    # exclusion category a ticket of that category proposes (docs/exclusions.md, "Tickets").
    exclusions: dict[str, Cause] = Field(default_factory=dict)

    def merged_over(self, default: TicketMapping) -> Self:
        """This mapping on top of the vendor default: statuses added to (or overriding) the
        default ones, the asset rule replaced when given."""
        return self.model_copy(update={
            "asset": self.asset or default.asset,
            "statuses": {**default.statuses, **self.statuses},
            "status_categories": {**default.status_categories, **self.status_categories},
            "ticket_url": self.ticket_url or default.ticket_url,
            "exclusions": {**default.exclusions, **self.exclusions}})

    def status(self, provider: str, names: Sequence[str | None], category: str | None = None
               ) -> TicketStatus:
        """The status of the first of `names` in `statuses` (a vendor may give a code and a
        label), else of `category` in `status_categories` (Jira)."""
        candidates = [(n, self.statuses) for n in names] + [(category, self.status_categories)]
        for value, table in candidates:
            if value is None:
                continue
            folded = value.strip().casefold()
            for key, status in table.items():
                if key.casefold() == folded:
                    return status
        shown = " / ".join(repr(v) for v, _ in candidates if v is not None) or "none"
        raise UnmappedValue(f"{provider} status {shown} is not mapped (add it under "
                            f"`{provider}.statuses` in the ticketing configuration)")


def field_values(value: Any, *, nested: bool = True) -> list[str]:
    """The asset candidates in a field, whatever its type: text, a number, a select option
    (`{"value": …}` / `{"name": …}`), a ServiceNow reference (`{"display_value", "value"}`:
    the display value first, it is what people name CIs by), or a list of those (one level:
    a list of lists is no vendor's field, and recursing into one is a stack to overflow).
    Booleans, fractional numbers and integers beyond 64 bits name nothing."""
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, int):
        return [str(value)] if abs(value) < 2**64 else []
    if isinstance(value, list):
        return [v for item in value for v in field_values(item, nested=False)] if nested \
            else []
    if isinstance(value, dict):
        out: list[str] = []
        for key in ("display_value", "value", "name", "key"):
            item = value.get(key)
            if isinstance(item, str) or (isinstance(item, int) and not isinstance(item, bool)
                                         and abs(item) < 2**64):
                out.append(str(item))
        return out
    return []


def labels_of(value: Any) -> list[str]:
    """Labels or tags: a JSON list, or the space-separated text a Zendesk trigger renders
    for `{{ticket.tags}}`. Items that are no text (or integer) are skipped."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [str(item) for item in map(raw, value)
                if isinstance(item, str) or (isinstance(item, int)
                                             and not isinstance(item, bool)
                                             and abs(item) < 2**64)]
    return []


# Each vendor's default mapping, the statuses as the vendors document them.
DEFAULTS: dict[str, TicketMapping] = {
    # statusCategory keys are fixed across Jira sites; status names are per workflow.
    "jira": TicketMapping(
        asset=AssetMapping(label_prefix="asset:"),
        status_categories={"new": "open", "indeterminate": "in_progress",
                           "done": "resolved"}),
    # Incident `state`: 1 New, 2 In Progress, 3 On Hold, 6 Resolved, 7 Closed, 8 Canceled —
    # codes and their English labels (a record sent with display values carries the label).
    "servicenow": TicketMapping(
        asset=AssetMapping(field="cmdb_ci"),
        statuses={"1": "open", "new": "open",
                  "2": "in_progress", "in progress": "in_progress",
                  "3": "in_progress", "on hold": "in_progress",
                  "6": "resolved", "resolved": "resolved",
                  "7": "resolved", "closed": "resolved",
                  "8": "resolved", "canceled": "resolved", "cancelled": "resolved"}),
    # Zendesk: new (nobody on it yet) → open; open/pending/hold (someone on it, possibly
    # waiting) → in_progress; solved/closed → resolved; `deleted` appears in exports.
    "zendesk": TicketMapping(
        asset=AssetMapping(label_prefix="asset_"),
        statuses={"new": "open", "open": "in_progress", "pending": "in_progress",
                  "hold": "in_progress", "solved": "resolved", "closed": "resolved",
                  "deleted": "resolved"}),
}


def asset_of(mapping: TicketMapping, fields: Mapping[str, Any], labels: Any) -> str | None:
    """The asset a ticket names, by `mapping.asset` over its fields and labels."""
    rule = mapping.asset
    assert rule is not None, "merge the mapping over the vendor default first"
    values = field_values(dig(dict(fields), rule.field)) if rule.field else []
    return rule.resolve(values, labels_of(labels))
