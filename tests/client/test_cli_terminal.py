"""The CLI on a terminal (a pty): rich tables that fit, colour, progress; plain through a pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios

import pytest
import soundfile

from tests.client.test_cli import RATE, mozart
from tests.support.audio import music_clip
from tests.support.server import InProcessServer

SGR = re.compile(r"\x1b\[[0-9;]*m")
"""Select Graphic Rendition: the escape sequences that set colour and bold."""
ESCAPE = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07)")


def on_a_terminal(*args: str, columns: int, **env_vars: str) -> str:
    """Runs the client commands with stdout and stderr on a pty `columns` wide; returns
    everything the terminal received."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MOZART_")}
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM", "COLUMNS", "LINES"):
        env.pop(name, None)
    env.update(TERM="xterm-256color", **env_vars)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "mozart_client.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    received = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            process.kill()
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the command exited and closed the pty
            break
        if not data:
            break
        received += data
    os.close(leader)
    assert process.wait(timeout=60) == 0
    return received.decode()


def visible(text: str) -> list[str]:
    """The terminal's lines without escape sequences; a carriage return starts a line over."""
    lines = text.replace("\r\n", "\n").split("\n")
    return [ESCAPE.sub("", line).split("\r")[-1].rstrip() for line in lines]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("terminal")
    paths = []
    for index, name in enumerate(["a-rather-long-file-name-for-a-narrow-terminal.wav", "b.wav"]):
        path = folder / name
        soundfile.write(path, music_clip(1.0, RATE, seed=index), RATE, subtype="PCM_16")
        paths.append(str(path))
    return paths


def test_a_terminal_gets_a_fitted_coloured_table_and_progress(server: InProcessServer, clips):
    shown = on_a_terminal("classify", *clips, "--server", server.address, columns=60)
    assert SGR.search(shown), "no colour on a colour terminal"
    assert "classifying" in shown  # the progress bar, on stderr
    assert "━" in shown
    lines = visible(shown)
    header = next(line for line in lines if line.startswith("FILE"))
    assert header.split()[:3] == ["FILE", "MODEL", "LABEL"]
    table = lines[lines.index(header) :]
    assert set(table[1]) == {"─"}  # the rule under the header
    # Fitted: no line wider than the terminal; the long name wraps in its column.
    assert max(len(line) for line in table) <= 60
    assert sum("tiny:1" in line for line in table) == 2


def test_no_color_on_a_terminal_means_no_colour(server: InProcessServer, clips) -> None:
    shown = on_a_terminal("classify", *clips, "--server", server.address, columns=120,
                          NO_COLOR="1")  # fmt: skip
    assert not SGR.search(shown)
    assert "classifying" in shown  # progress still shows, uncoloured
    assert any(line.startswith("FILE ") for line in visible(shown))


def test_through_a_pipe_the_output_is_plain(server: InProcessServer, clips) -> None:
    piped = mozart("classify", *clips, "--server", server.address, COLUMNS="40")
    assert piped.returncode == 0, piped.stderr
    assert "\x1b" not in piped.stdout + piped.stderr
    assert piped.stderr == ""  # no progress bar
    # One row per file, never wrapped, whatever COLUMNS says.
    assert [line.split()[0] for line in piped.stdout.splitlines()] == ["FILE", *clips]
    assert all(line == line.rstrip() for line in piped.stdout.splitlines())
    # Two spaces after a column's widest cell ("tiny:1" is wider than "MODEL").
    assert all(re.search(r" tiny:1  \S", line) for line in piped.stdout.splitlines()[1:])


def test_a_stream_on_a_terminal_shows_rows_above_its_progress(server: InProcessServer, clips):
    shown = on_a_terminal("stream", clips[0], "--server", server.address, columns=100)
    assert "s of audio" in shown  # the progress bar counts audio seconds
    lines = visible(shown)
    header = lines.index(next(line for line in lines if line.lstrip().startswith("WINDOW")))
    rows = [line.split() for line in lines[header + 1 :] if line.split()[:1] in (["0"], ["1"])]
    assert [row[:2] for row in rows] == [["0", "0.0-0.5"], ["1", "0.2-0.8"]]
    assert any(re.match(r"summary: \w+ over 3 windows", line) for line in lines)
