"""The permission table in docs/api.md is the one the API enforces."""

from __future__ import annotations

from api.auth.permissions import permission_table
from connectors.settings import REPO_ROOT


def test_the_documented_permission_table_is_the_enforced_one() -> None:
    text = (REPO_ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    start = text.index("<!-- permission-table")
    start = text.index("\n", start) + 1
    end = text.index("<!-- /permission-table -->")
    assert text[start:end].strip() == permission_table()
