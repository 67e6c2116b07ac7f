"""YAML parsing that remembers where every key stood, so errors can name the line."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ValidationError

from contracts.errors import InvalidInput
from contracts.textfiles import read_text as read_text  # re-exported: loaders import it here

M = TypeVar("M", bound=BaseModel)


class _PyLoader(yaml.SafeLoader):
    """A safe loader that leaves dates and times as text: the models parse them, so a bad date
    is reported with its key like any other bad value."""


_PyLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# The same on libyaml's parser where PyYAML has it: a fleet of thousands of assets loads in a
# second rather than half a minute. Invalid YAML is parsed again by the Python parser, whose
# messages are the ones users see (and tests pin).
_Loader: type[Any] = _PyLoader
if hasattr(yaml, "CSafeLoader"):
    class _CLoader(yaml.CSafeLoader):  # type: ignore[name-defined, misc]
        yaml_implicit_resolvers = _PyLoader.yaml_implicit_resolvers

    _Loader = _CLoader


class YamlDocument:
    """A parsed YAML document plus its node tree, for mapping key paths back to lines."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        try:
            try:
                self.node, self.data = _parse(text, _Loader)
            except yaml.YAMLError:
                self.node, self.data = _parse(text, _PyLoader)  # raises, with its message
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark else None
            raise InvalidInput(source, "", f"not valid YAML: {exc.problem}", line) from None
        except yaml.YAMLError as exc:
            raise InvalidInput(source, "", f"not valid YAML: {exc}") from None

    def locate(self, path: Sequence[str | int]) -> tuple[str, int | None]:
        """The key path as a user reads it, and the 1-based line of the deepest node along
        `path` that exists.

        The node tree says what each part is: an index into a list (`units[2]`) or a key of
        a mapping (`by_contract_year.3` — the mapping's keys may be numbers too). Pydantic's
        `[key]` marker (the error is in the key itself, not its value) adds nothing a user
        needs: the path already ends at the key."""
        node = self.node
        line: int | None = None if node is None else node.start_mark.line + 1
        text = ""
        for part in path:
            if part == "[key]":
                continue
            child = None
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if key_node.value == str(part):
                        line = key_node.start_mark.line + 1
                        child = value_node
                        break
            elif (isinstance(node, yaml.SequenceNode) and isinstance(part, int)
                  and 0 <= part < len(node.value)):
                child = node.value[part]
                line = child.start_mark.line + 1
            in_list = isinstance(node, yaml.SequenceNode) or (
                not isinstance(node, yaml.MappingNode) and isinstance(part, int))
            text += f"[{part}]" if in_list else f".{part}" if text else str(part)
            node = child
        return text, line

    def error(self, path: Sequence[str | int], problem: str) -> InvalidInput:
        where, line = self.locate(path)
        return InvalidInput(self.source, where, problem, line)


def _parse(text: str, loader_class: type[Any]) -> tuple[yaml.Node | None, Any]:
    """Parsed once: the node tree (for lines), then the data built from it."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        return node, None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def _iso_date(value: object) -> object:
    """A date written `YYYY-MM-DD` (or a `date` built in code), nothing else: pydantic alone
    would also take `2024-06-15T00:00` or a Unix timestamp and quietly drop the time."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError(f"must be a date written YYYY-MM-DD (got {value!r})")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a date: {exc}") from None


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
# A name people read (a vendor, a product model): printable, no blank at either end.
LABEL_PATTERN = r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]{0,62}[^\s\x00-\x1f\x7f])?$"

_MESSAGES = {
    "missing": "required key is missing",
    "too_short": "must not be empty",
}
_PATTERN_MESSAGES = {
    ID_PATTERN: "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
    CURRENCY_PATTERN: "must be a three-letter ISO 4217 code such as EUR",
    LABEL_PATTERN: "must be 1-64 printable characters, not starting or ending with a blank",
}


def describe(error: Any) -> str:
    """A pydantic error as one short sentence a user can act on."""
    kind = error["type"]
    pattern = (error.get("ctx") or {}).get("pattern")
    if kind in _MESSAGES:
        problem = _MESSAGES[kind]
    elif kind == "string_pattern_mismatch" and pattern in _PATTERN_MESSAGES:
        problem = _PATTERN_MESSAGES[pattern]
    else:
        problem = str(error["msg"])
        problem = problem.removeprefix("Value error, ")
        problem = problem.replace("Input should be", "must be")
        problem = problem[:1].lower() + problem[1:]
    if kind not in ("missing", "value_error") and not isinstance(error.get("input"), dict | list):
        problem += f" (got {error.get('input')!r})"
    return problem


def validate(doc: YamlDocument, model: type[M], expected: str) -> M:
    """The document as `model`; the first problem raised as `InvalidInput` with its line.

    `expected` completes "must be a mapping with …" for a document that is not a mapping."""
    if not isinstance(doc.data, dict):
        raise doc.error([], f"must be a mapping with {expected}")
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise doc.error(list(first["loc"]), describe(first)) from None


