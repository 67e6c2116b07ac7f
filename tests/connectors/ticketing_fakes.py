"""Fake ticketing vendors for the tests: real HTTP servers on 127.0.0.1 (`http.server`, one
thread each) speaking the endpoints and JSON shapes Jira Cloud, ServiceNow and Zendesk
document, and refusing requests whose Authorization header is not the configured credential
— no mock of httpx: every request goes through the socket like it would to the vendor.

Besides the searches and creation: finding a ticket again by the marker the ticket poller
puts on it (a Jira label in JQL, a ServiceNow `correlation_id` in the encoded query, a
Zendesk `external_id`), answers scripted for the next requests (a 429 with Retry-After, a
500), and an answer lost after the request was carried out (the connection dropped)."""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


Route = Callable[[Call], tuple[int, Any]]


@dataclass
class Scripted:
    """An answer given instead of the route's to the next request of `method` to `path`."""

    method: str
    path: str
    status: int
    body: Any
    headers: dict[str, str]


class FakeVendor:
    """A vendor's REST API over real HTTP on 127.0.0.1: every request is recorded, and one
    whose Authorization header is not `authorization` gets the vendor's 401. `script` sets
    the answers to the next requests to a path (a 429 with Retry-After, a 500); `lose_answer`
    makes the next request to a path be carried out and its answer never sent (the
    connection is closed: what a client sees when the network or the vendor's edge fails
    after the work was done); `down` answers every request 503 without Retry-After."""

    def __init__(self, authorization: str, routes: dict[tuple[str, str], Route]) -> None:
        self.authorization = authorization
        self.routes = routes
        self.calls: list[Call] = []
        self.scripted: list[Scripted] = []
        self.lost: list[tuple[str, str]] = []
        self.down = False
        self.lock = threading.Lock()
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                call = Call(self.command, url.path, dict(parse_qsl(url.query)),
                            {k.lower(): v for k, v in self.headers.items()},
                            json.loads(raw) if raw else None)
                headers: dict[str, str] = {}
                lose = False
                with vendor.lock:
                    vendor.calls.append(call)
                    route = vendor.routes.get((self.command, url.path))
                    scripted = next((a for a in vendor.scripted
                                     if (a.method, a.path) == (self.command, url.path)), None)
                    if self.headers.get("Authorization") != vendor.authorization:
                        status, answer = 401, {"error": "Couldn't authenticate you"}
                    elif vendor.down:
                        status, answer = 503, {"error": "Service Unavailable"}
                    elif scripted is not None:
                        vendor.scripted.remove(scripted)
                        status, answer, headers = (scripted.status, scripted.body,
                                                   scripted.headers)
                    elif route is None:
                        status, answer = 404, {"error": "InvalidEndpoint"}
                    else:
                        status, answer = route(call)
                        if (self.command, url.path) in vendor.lost:
                            vendor.lost.remove((self.command, url.path))
                            lose = True
                if lose:
                    self.close_connection = True
                    return
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeVendor:
        self.thread.start()
        return self

    def script(self, method: str, path: str, status: int, body: Any,
               headers: dict[str, str] | None = None, times: int = 1) -> None:
        with self.lock:
            self.scripted += [Scripted(method, path, status, body, headers or {})] * times

    def lose_answer(self, method: str, path: str) -> None:
        with self.lock:
            self.lost.append((method, path))

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def secrets_in(text: str, *secrets: str) -> list[str]:
    return [s for s in secrets if s in text]


# Jira ----------------------------------------------------------------------------------

STOCKHOLM = ZoneInfo("Europe/Stockholm")
JIRA_TOKEN = "ATATT3xFfGF0-jira-api-token-7f3a"


def jira_time(moment: datetime) -> str:
    local = moment.astimezone(STOCKHOLM)
    return f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond // 1000:03d}{local:%z}"


class FakeJira:
    """Jira Cloud's `GET /rest/api/3/search/jql` and `POST /rest/api/3/issue`; the API
    user's profile zone is Europe/Stockholm, so JQL times are read in it."""

    def __init__(self) -> None:
        self.issues: list[dict[str, Any]] = []
        self.vendor = FakeVendor(basic("noc@acme.example", JIRA_TOKEN), {
            ("GET", "/rest/api/3/search/jql"): self.search,
            ("POST", "/rest/api/3/issue"): self.create})

    def add(self, key: str, updated: datetime, labels: list[str],
            status: tuple[str, str] = ("To Do", "new"), summary: str = "") -> dict[str, Any]:
        number = 10_000 + len(self.issues) + 1
        issue = {"id": str(number), "key": key,
                 "self": f"{self.vendor.url}/rest/api/3/issue/{number}",
                 "fields": {"summary": summary, "labels": labels,
                            "created": jira_time(updated - timedelta(hours=1)),
                            "updated": jira_time(updated), "resolutiondate": None,
                            "priority": {"name": "Medium", "id": "3"},
                            "issuetype": {"name": "Task", "id": "10001"},
                            "status": {"name": status[0],
                                       "statusCategory": {"key": status[1]}}}}
        self.issues.append(issue)
        return issue

    def touch(self, key: str, updated: datetime,
              status: tuple[str, str] | None = None) -> dict[str, Any]:
        """An issue changed at `updated` (and moved to `status`)."""
        issue = next(i for i in self.issues if i["key"] == key)
        issue["fields"]["updated"] = jira_time(updated)
        if status is not None:
            issue["fields"]["status"] = {"name": status[0],
                                         "statusCategory": {"key": status[1]}}
        return issue

    def search(self, call: Call) -> tuple[int, Any]:
        labelled = re.fullmatch(r'labels = "([A-Za-z0-9_-]+)" ORDER BY created ASC',
                                call.query.get("jql", ""))
        if labelled is not None:
            hits = [i for i in self.issues if labelled[1] in i["fields"]["labels"]]
            return 200, {"issues": hits[:int(call.query["maxResults"])], "isLast": True}
        found = re.fullmatch(r'updated >= "(\d{4}-\d\d-\d\d \d\d:\d\d)" ORDER BY updated ASC',
                             call.query.get("jql", ""))
        if found is None:
            return 400, {"errorMessages": ["Error in the JQL Query"], "errors": {}}
        since = datetime.strptime(found[1], "%Y-%m-%d %H:%M").replace(tzinfo=STOCKHOLM)
        hits = sorted((i for i in self.issues
                       if datetime.fromisoformat(i["fields"]["updated"]) >= since),
                      key=lambda i: datetime.fromisoformat(i["fields"]["updated"]))
        start = int(call.query.get("nextPageToken", "0"))
        size = int(call.query["maxResults"])
        page: dict[str, Any] = {"issues": hits[start:start + size],
                                "isLast": start + size >= len(hits)}
        if not page["isLast"]:
            page["nextPageToken"] = str(start + size)
        return 200, page

    def create(self, call: Call) -> tuple[int, Any]:
        fields = call.body["fields"]
        if not (fields.get("project", {}).get("key") and fields.get("summary")
                and fields.get("issuetype", {}).get("name")
                and fields.get("description", {}).get("type") == "doc"):
            return 400, {"errorMessages": [], "errors": {"summary": "required"}}
        key = f"{fields['project']['key']}-{100 + len(self.issues)}"
        issue = self.add(key, datetime.now(UTC), fields.get("labels", []),
                         summary=fields["summary"])
        issue["fields"]["description"] = fields["description"]
        return 201, {"id": issue["id"], "key": key, "self": issue["self"]}


# ServiceNow ----------------------------------------------------------------------------

SN_TOKEN = "sn-oauth-access-token-93b1c0"
CIS = {"3f1c2a9e1b7d4c10a3b5e6f7a8b9c0d1": "NORDVIK-BESS-U01"}
PRIORITY = {("1", "1"): "1", ("1", "2"): "2", ("2", "1"): "2", ("2", "2"): "3",
            ("1", "3"): "3", ("3", "1"): "3", ("2", "3"): "4", ("3", "2"): "4",
            ("3", "3"): "5"}


class FakeServiceNow:
    """The Table API on `incident` (GET with an encoded query, offset paging and
    `sysparm_display_value=all`; POST), OAuth bearer auth; the API user's zone is UTC."""

    def __init__(self) -> None:
        self.records: list[dict[str, str]] = []
        self.vendor = FakeVendor(f"Bearer {SN_TOKEN}", {
            ("GET", "/api/now/table/incident"): self.search,
            ("POST", "/api/now/table/incident"): self.create})

    def add(self, number: str, updated: datetime, ci: str = "", state: str = "2",
            impact: str = "2", urgency: str = "2", summary: str = "") -> dict[str, str]:
        record = {"number": number, "sys_id": uuid.uuid4().hex, "sys_class_name": "incident",
                  "state": state, "impact": impact, "urgency": urgency,
                  "priority": PRIORITY[impact, urgency], "category": "hardware",
                  "short_description": summary,
                  "opened_at": f"{updated - timedelta(hours=2):%Y-%m-%d %H:%M:%S}",
                  "sys_updated_on": f"{updated:%Y-%m-%d %H:%M:%S}", "resolved_at": "",
                  "closed_at": "", "cmdb_ci": ci}
        self.records.append(record)
        return record

    @staticmethod
    def display_all(record: dict[str, str]) -> dict[str, Any]:
        shown = {"state": {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved"}}
        out: dict[str, Any] = {k: {"display_value": shown.get(k, {}).get(v, v), "value": v}
                               for k, v in record.items()}
        out["cmdb_ci"]["display_value"] = CIS.get(record["cmdb_ci"], "")
        return out

    def search(self, call: Call) -> tuple[int, Any]:
        marked = re.fullmatch(r"correlation_id=([A-Za-z0-9_-]+)\^ORDERBYsys_created_on",
                              call.query.get("sysparm_query", ""))
        if marked is not None:
            return 200, {"result": [self.display_all(r) for r in self.records
                                    if r.get("correlation_id") == marked[1]]}
        found = re.fullmatch(r"sys_updated_on>=(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)"
                             r"\^ORDERBYsys_updated_on", call.query.get("sysparm_query", ""))
        if found is None or call.query.get("sysparm_display_value") != "all":
            return 400, {"error": {"message": "Invalid query"}, "status": "failure"}
        hits = sorted((r for r in self.records if r["sys_updated_on"] >= found[1]),
                      key=lambda r: r["sys_updated_on"])
        offset, limit = int(call.query["sysparm_offset"]), int(call.query["sysparm_limit"])
        return 200, {"result": [self.display_all(r) for r in hits[offset:offset + limit]]}

    def create(self, call: Call) -> tuple[int, Any]:
        body = call.body
        if not body.get("short_description"):
            return 400, {"error": {"message": "short_description is mandatory"}}
        record = self.add(f"INC00200{len(self.records):02d}", datetime.now(UTC),
                          body.get("cmdb_ci", ""), "1", body.get("impact", "3"),
                          body.get("urgency", "3"), body["short_description"])
        if body.get("correlation_id"):
            record["correlation_id"] = body["correlation_id"]
        if body.get("description"):
            record["description"] = body["description"]
        return 201, {"result": self.display_all(record)}


# Zendesk -------------------------------------------------------------------------------

ZD_TOKEN = "zd-api-token-6YkqW2"


class FakeZendesk:
    """Support API v2: cursor-based incremental ticket export and ticket creation; API
    token authentication (`{email}/token:{token}`)."""

    def __init__(self) -> None:
        self.tickets: list[dict[str, Any]] = []
        self.vendor = FakeVendor(basic("noc@acme.example/token", ZD_TOKEN), {
            ("GET", "/api/v2/incremental/tickets/cursor.json"): self.export,
            ("POST", "/api/v2/tickets"): self.create,
            ("GET", "/api/v2/tickets"): self.list_by_external_id})

    def add(self, updated: datetime, tags: list[str], status: str = "open",
            custom: Any = None, subject: str = "") -> dict[str, Any]:
        number = 35_500 + len(self.tickets)
        ticket = {"url": f"{self.vendor.url}/api/v2/tickets/{number}.json", "id": number,
                  "created_at": f"{updated - timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}",
                  "updated_at": f"{updated:%Y-%m-%dT%H:%M:%SZ}", "type": "incident",
                  "subject": subject, "priority": "normal", "status": status, "tags": tags,
                  "custom_fields": [{"id": 360012345678, "value": custom}]}
        self.tickets.append(ticket)
        return ticket

    def export(self, call: Call) -> tuple[int, Any]:
        if "cursor" in call.query:
            start, offset = map(int, base64.b64decode(call.query["cursor"]).decode().split())
        elif "start_time" in call.query:
            start, offset = int(call.query["start_time"]), 0
        else:
            return 400, {"error": "InvalidValue", "description": "start_time is required"}
        hits = sorted((t for t in self.tickets
                       if datetime.fromisoformat(t["updated_at"]).timestamp() >= start),
                      key=lambda t: t["updated_at"])
        size = int(call.query.get("per_page", "1000"))
        end = offset + size >= len(hits)
        cursor = base64.b64encode(f"{start} {offset + size}".encode()).decode()
        return 200, {"tickets": hits[offset:offset + size], "after_cursor": cursor,
                     "before_cursor": None, "end_of_stream": end}

    def create(self, call: Call) -> tuple[int, Any]:
        ticket = call.body["ticket"]
        if not ticket.get("comment", {}).get("body"):
            return 422, {"error": "RecordInvalid", "details": {"description": "blank"}}
        custom = next((f["value"] for f in ticket.get("custom_fields", [])
                       if f["id"] == 360012345678), None)
        created = self.add(datetime.now(UTC), ticket.get("tags", []), "new", custom,
                           ticket["subject"])
        created["priority"] = ticket.get("priority")
        created["external_id"] = ticket.get("external_id")
        created["description"] = ticket["comment"]["body"]
        return 201, {"ticket": created, "audit": {"events": []}}

    def list_by_external_id(self, call: Call) -> tuple[int, Any]:
        """`GET /api/v2/tickets?external_id=…` (List Tickets filtered by external id)."""
        wanted = call.query.get("external_id")
        if not wanted:
            return 400, {"error": "InvalidValue", "description": "external_id is required"}
        hits = [t for t in self.tickets if t.get("external_id") == wanted]
        return 200, {"tickets": hits, "next_page": None, "previous_page": None,
                     "count": len(hits)}

