"""Durations and sizes as operators write them, in the file and on the command line."""

from __future__ import annotations

import pytest

from agent.config import parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("2h", 7200),
        ("7d", 604800),
        ("1w", 604800),
        ("1h30m", 5400),
        ("90", 90),
        (" 5m ", 300),
        ("0", 0),
        (120, 120),
        ("2 h", 7200),
    ],
)
def test_parse_duration(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "15 minutes",
        "",
        "m",
        "1.5h",
        "-5m",
        "15M",
        "1y",
        "2h-",
        "1:30",
        -1,
        True,
        "１５m",
        "99999999d",
    ],
)
def test_parse_duration_refuses(text: str | int) -> None:
    with pytest.raises(ValueError, match=r"write 30s, 15m, 2h or 7d"):
        parse_duration(text)


def test_parse_duration_message_names_the_value() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("15 minutes")
    assert str(info.value) == "not a duration ('15 minutes'); write 30s, 15m, 2h or 7d"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64KiB", 65536),
        ("256MiB", 256 * 2**20),
        ("1GiB", 2**30),
        ("10MB", 10_000_000),
        ("1kB", 1000),
        ("1KB", 1000),
        ("2TiB", 2 * 2**40),
        ("512", 512),
        ("512B", 512),
        (4096, 4096),
        ("16 MiB", 16 * 2**20),
        ("1mib", 2**20),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["64K", "1M", "1.5GiB", "lots", "", "-1", -1, "MiB", False, "10 MiB extra"]
)
def test_parse_size_refuses(text: str | int) -> None:
    with pytest.raises(ValueError, match=r"write 64KiB, 256MiB, 1GiB or a number of bytes"):
        parse_size(text)
