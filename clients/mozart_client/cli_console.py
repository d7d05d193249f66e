"""Where the client commands write: rich tables on a terminal, plain columns through a pipe.

Colour and table borders appear only when stdout is a terminal, never with `NO_COLOR`
set (https://no-color.org); progress bars go to stderr, only when it is a terminal.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

_PLAIN_WIDTH = 1 << 20
"""Rendering width through a pipe: wide enough that no row ever wraps."""


@dataclass(frozen=True)
class Columns:
    """Rows of text under headers: what every table of the client commands is.

    Attributes:
        headers: One per column.
        rows: Cells, as many per row as headers.
        wrap: Headers of the columns that may wrap on a narrow terminal (others
            keep their cells on one line and the table shrinks them last).
    """

    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    wrap: frozenset[str] = field(default_factory=frozenset)


def no_color() -> bool:
    """True when the environment asks for no colour (`NO_COLOR` set and not empty)."""
    return os.environ.get("NO_COLOR", "") != ""


def _console(stderr: bool) -> Console:
    # color_system=None under NO_COLOR: no escape codes at all, not even bold.
    return Console(
        stderr=stderr,
        highlight=False,
        markup=False,
        emoji=False,
        color_system=None if no_color() else "auto",
    )


def _rich_table(columns: Columns, *, plain: bool) -> Table:
    table = Table(
        box=None if plain else box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        # Two spaces between columns either way: a box's column divider is a space too.
        collapse_padding=not plain,
        header_style="" if plain else "bold",
    )
    for header in columns.headers:
        wraps = header in columns.wrap and not plain
        # A wrapping column gives way first; the others shrink (with "…") only after.
        table.add_column(header, no_wrap=not wraps, overflow="fold" if wraps else "ellipsis")
    for row in columns.rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def plain_text(columns: Columns) -> str:
    """The table as plain aligned columns, two spaces apart, no trailing spaces."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=_PLAIN_WIDTH, color_system=None, highlight=False)
    console.print(_rich_table(columns, plain=True))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


class Terminal:
    """The stdout and stderr of one command run, as rich consoles."""

    def __init__(self) -> None:
        self.out = _console(stderr=False)
        self.err = _console(stderr=True)

    @property
    def interactive(self) -> bool:
        """True when stdout is a terminal (tables get borders, colour and the screen's width)."""
        return self.out.is_terminal

    def table(self, columns: Columns) -> None:
        """Prints a table: fitted to the terminal, or plain columns through a pipe."""
        if self.interactive:
            self.out.print(_rich_table(columns, plain=False))
        else:
            line(plain_text(columns))

    def text(self, text: str, style: str = "") -> None:
        """Prints text on stdout, styled only on a colour terminal."""
        if self.interactive:
            self.out.print(Text(text, style=style), soft_wrap=True)
        else:
            line(text)

    def note(self, text: str) -> None:
        """Prints a remark on stderr (what is happening), dim on a colour terminal."""
        self.err.print(Text(text, style="dim" if self.err.is_terminal else ""), soft_wrap=True)

    def error(self, text: str) -> None:
        """Prints a message on stderr (red on a colour terminal)."""
        self.err.print(Text(text, style="red" if self.err.is_terminal else ""), soft_wrap=True)

    @contextmanager
    def progress(self, description: str, total: float | None, unit: str = "") -> Iterator[Bar]:
        """A transient progress bar on stderr, shown only when stderr is a terminal.

        When stdout is the terminal too, lines printed to it meanwhile appear above
        the bar (rich sends them through the bar's console); through a pipe they go
        to the pipe untouched.
        """
        counter = MofNCompleteColumn() if not unit else TextColumn("{task.completed:.1f} " + unit)
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            counter,
            TimeElapsedColumn(),
            console=self.err,
            transient=True,
            redirect_stdout=self.out.is_terminal,
            redirect_stderr=False,
            disable=not self.err.is_terminal,
        )
        with progress:
            yield Bar(progress, progress.add_task(description, total=total))


@dataclass
class Bar:
    """One task of a progress display."""

    progress: Progress
    task: TaskID

    def advance(self, amount: float = 1) -> None:
        """Moves the bar on by `amount`."""
        self.progress.advance(self.task, amount)

    def update(self, completed: float) -> None:
        """Sets how much is done."""
        self.progress.update(self.task, completed=completed)


def line(text: str) -> None:
    """Prints one line on stdout and flushes, so rows appear live even through a pipe."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
