"""One error type for every refused input, so that every command and service reports a bad
file the same way: the file, where in it, and what is wrong."""

from __future__ import annotations


class InvalidInput(ValueError):
    """Input refused: names the source (file), the location (key path or line) and the problem."""

    def __init__(self, source: str, location: str, problem: str, line: int | None = None) -> None:
        self.source = source
        self.location = location
        self.problem = problem
        self.line = line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {location}: {problem}" if location else f"{where}: {problem}")
