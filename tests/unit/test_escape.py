"""What came from the network is shown escaped: in sync and status output, errors, logs, the
journal and systemd's STATUS= (agent/util/escape.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.daemon import notify
from agent.errors import FetchError
from agent.util.escape import SafeRecords, shown
from lab.httpserver import HttpServer, Reply

Cli = Callable[..., Any]
PAINT = "\x1b[2J\x1b[32mall good\x1b[0m"


def test_shown_escapes_controls_and_invisible_formatting() -> None:
    assert shown("plain text, é, 中文") == "plain text, é, 中文"
    assert shown(PAINT) == "\\e[2J\\e[32mall good\\e[0m"
    assert shown("a\nb\rc\td\x00\x7f\x85") == "a\\nb\\rc\\td\\x00\\x7f\\x85"
    assert shown("evil\u202egnp.exe\u200b") == "evil\\u202egnp.exe\\u200b"
    assert shown("line one\nline two\x1b", newlines=True) == "line one\nline two\\e"


def test_errors_escape_what_they_carry() -> None:
    err = FetchError(f"the server answered HTTP 503 {PAINT}", where="http://x/\x1b]0;t\x07",
                     hint="retry\nlater")
    assert "\x1b" not in str(err) and "\x07" not in str(err)
    assert err.to_dict()["where"] == "http://x/\\e]0;t\\x07"
    assert err.hint == "retry\nlater"  # the agent's own line breaks stay


def test_a_hostile_reason_phrase_and_location_are_shown_escaped(
        server: HttpServer, write_config: Callable[..., Path], cli: Cli) -> None:
    server.route("/paint/manifest.json", Reply(status=503, reason=PAINT))
    server.route("/move/manifest.json", Reply(status=302, headers={
        "Location": "ftp://evil.example/\x1b[2Jx"}))
    write_config({"name": "paint", "url": server.url("/paint/manifest.json")},
                 {"name": "move", "url": server.url("/move/manifest.json")})
    result = cli("sync")
    assert result.code == 1
    assert "\x1b" not in result.out + result.err
    assert "HTTP 503 \\e[2J\\e[32mall good\\e[0m" in result.out
    assert "redirect to ftp://evil.example/\\e[2Jx, which is not an http(s) URL" in result.out
    status = cli("status")
    assert "\x1b" not in status.out and "\\e[32mall good" in status.out


def test_log_records_and_the_journal_are_escaped(caplog: pytest.LogCaptureFixture) -> None:
    record = logging.LogRecord("agent", logging.ERROR, __file__, 1, "feed %s: %s", ("x", PAINT),
                               None)
    assert SafeRecords().filter(record)
    assert record.getMessage() == "feed x: \\e[2J\\e[32mall good\\e[0m"
    sent: list[tuple[str, dict[str, str]]] = []
    journal = notify.Journal(send=lambda message, **fields: sent.append((message, fields)))
    journal.event(logging.WARNING, f"refused: {PAINT}\nsecond line", FEED="a\nb")
    message, fields = sent[0]
    assert message == "refused: \\e[2J\\e[32mall good\\e[0m\nsecond line"
    assert fields["FEED"] == "a\\nb"


def test_status_assignment_cannot_inject_another(monkeypatch: pytest.MonkeyPatch) -> None:
    states: list[str] = []
    monkeypatch.setattr(notify, "_notify", lambda state: states.append(state) or True)
    notify.notify("STATUS=feed failed: 503 x\nREADY=1\x1b[0m")
    assert states == ["STATUS=feed failed: 503 x READY=1\\e[0m"]
