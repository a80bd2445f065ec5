"""What issue 14 must not change while the work follows the change (docs/design.md §15): a kept
result, base or record that fails its check is rebuilt, never trusted; a guard change is never
hidden by a kept result; a sync with nothing new applies nothing, and says so."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lab.httpserver import HttpServer

if TYPE_CHECKING:
    from tests.conftest import CliResult

LIST = "185.220.101.3\n45.155.205.1\n91.92.109.7\nevil.example\nphish.example\n"
Cli = Callable[..., "CliResult"]


@pytest.fixture
def synced(server: HttpServer, publish: Callable[..., Any], write_config: Callable[..., Path],
           cli: Cli, state_dir: Path) -> Callable[..., Path]:
    """Publish LIST as feed `cert`, write the config (with `settings`), sync once."""

    def do(**settings: Any) -> Path:
        publish("cert", LIST, serial=1)
        path = write_config({"name": "cert", "url": server.url("/cert/manifest.json")},
                            **settings)
        result = cli("sync")
        assert result.code == 0, result
        return path

    return do


def _sync_json(cli: Cli) -> dict[str, Any]:
    result = cli("sync", "--json")
    assert result.code == 0, result
    doc: dict[str, Any] = result.json
    return doc


def test_a_damaged_kept_result_is_computed_again(synced: Callable[..., Path], cli: Cli,
                                                 state_dir: Path,
                                                 enforced: Callable[[], Any]) -> None:
    synced()
    before = enforced()
    kept = list((state_dir / "cache" / "cert").glob("*.digest"))
    assert kept, "the feed's validated result is kept"
    for path in kept:
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x01  # one bit of the values
        path.write_bytes(bytes(data))
    cli("allow", "phish.example", "--reason", "test")  # the merge must read the feed again
    doc = _sync_json(cli)
    assert doc["feeds"][0]["accepted"] == 5 and doc["feeds"][0]["error"] is None
    after = enforced()
    assert after["v4"] == before["v4"] and "evil.example" in after["names"]
    assert "phish.example" not in after["names"]
    for path in (state_dir / "cache" / "cert").glob("*.digest"):  # the damaged one replaced
        assert path.read_bytes() != bytes(data)


def test_a_guard_change_is_not_hidden_by_a_kept_result(synced: Callable[..., Path], cli: Cli,
                                                      write_config: Callable[..., Path],
                                                      server: HttpServer,
                                                      enforced: Callable[[], Any]) -> None:
    synced()
    assert "45.155.205.1" in enforced()["v4"]
    write_config({"name": "cert", "url": server.url("/cert/manifest.json")},
                 guards={"max_change": 0.5, "protected": ["45.155.205.0/24"]})
    doc = _sync_json(cli)
    assert doc["feeds"][0]["guard_rejects"] == {"protected": 1}, doc["feeds"][0]
    assert "45.155.205.1" not in enforced()["v4"]


def test_a_damaged_base_is_set_aside_and_rebuilt(synced: Callable[..., Path], cli: Cli,
                                                state_dir: Path,
                                                enforced: Callable[[], Any]) -> None:
    synced()
    before = enforced()
    bases = list((state_dir / "applied.base").glob("*.json"))
    assert len(bases) == 1
    damaged = bases[0].read_bytes()[:-5]  # truncated
    bases[0].write_bytes(damaged)
    doc = _sync_json(cli)
    repairs = doc["state_repairs"]
    assert len(repairs) == 1 and "base of applied.json is damaged" in json.dumps(repairs), repairs
    assert enforced() == before  # rebuilt whole from the feeds' last good copies
    rebuilt = list((state_dir / "applied.base").glob("*.json"))
    assert len(rebuilt) == 1 and rebuilt[0].read_bytes() != damaged  # written again whole
    assert (state_dir / "damaged").is_dir()


def test_nothing_new_applies_nothing_and_keeps_the_record(synced: Callable[..., Path],
                                                         cli: Cli, state_dir: Path) -> None:
    synced()
    record = json.loads((state_dir / "applied.json").read_text())
    doc = _sync_json(cli)
    assert doc["applied"] is True and doc["plan"]["added"] == doc["plan"]["removed"] == 0
    again = json.loads((state_dir / "applied.json").read_text())
    assert again["meta"]["generation"] == record["meta"]["generation"]
    assert again["meta"]["inputs"] == record["meta"]["inputs"]
    cli("deny", "45.155.205.99", "--reason", "test")  # an input changed: a real apply
    doc = _sync_json(cli)
    assert doc["plan"]["added"] == 1
    newer = json.loads((state_dir / "applied.json").read_text())
    assert newer["meta"]["generation"] == record["meta"]["generation"] + 1


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Each reading by difference tried: how it was taken, or None (agent.bulk_delta)."""
    from agent import bulk_delta
    taken: list[str | None] = []
    real = bulk_delta.by_difference

    def spy(*args: Any, **kwargs: Any) -> Any:
        shift = real(*args, **kwargs)
        taken.append(None if shift is None else shift.way)
        return shift

    monkeypatch.setattr(bulk_delta, "by_difference", spy)
    return taken


def test_an_update_is_read_by_difference_as_a_full_reading_would(
        synced: Callable[..., Path], cli: Cli, publish: Callable[..., Any],
        enforced: Callable[[], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A new copy of a plain list is read from the previous copy's result, and everything a
    full reading says holds: the values, the counts, the refusals, the line of each value."""
    synced()
    rows = [f"185.220.{i // 200}.{i % 200 + 1}" for i in range(400)] + [
        f"host{i}.evil.example" for i in range(40)]
    publish("cert", "\n".join(rows) + "\n", serial=2)
    assert _sync_json(cli)["feeds"][0]["accepted"] == 440
    taken = _spy(monkeypatch)
    new = [*rows[:100], "10.9.8.7", "45.155.205.9", "1.2.3.0/24", "EVIL.example", *rows[101:]]
    publish("cert", "\n".join(new) + "\n", serial=3)
    doc = _sync_json(cli)
    assert taken == ["in order"]  # the copies share their order: compared side by side
    feed = doc["feeds"][0]
    assert feed["parsed"] == 443 and feed["accepted"] == 442 and feed["error"] is None
    assert feed["guard_rejects"] == {"special-range": 1}, feed
    sets = enforced()
    assert "185.220.0.101" not in sets["v4"] and "45.155.205.9" in sets["v4"]
    assert "10.9.8.7" not in sets["v4"] and "1.2.3.0/24" in sets["v4_nets"]
    assert "evil.example" in sets["names"] and len(sets["v4"]) == 400
    why = cli("why", "1.2.3.0/24", "--json").json
    assert why["sources"][0]["ref"].endswith(":103"), why
    why = cli("why", "185.220.0.200", "--json").json
    assert why["sources"][0]["ref"].endswith(":203"), why


@pytest.mark.parametrize(("reorder", "way"), [
    pytest.param(lambda rows: rows[20:] + rows[:20] + rows[10:12], "in order",
                 id="rows moved and listed twice"),
    pytest.param(lambda rows: rows[::-1][:-3], "by sets", id="order reversed"),
])
def test_a_reordered_copy_is_enforced_as_listed(
        synced: Callable[..., Path], cli: Cli, publish: Callable[..., Any],
        enforced: Callable[[], Any], monkeypatch: pytest.MonkeyPatch,
        reorder: Callable[[list[str]], list[str]], way: str) -> None:
    """Rows that move, repeat or change order between two copies: the reading in order
    pairs what it can and the rest is scanned, or it gives the copies to the sets; either way
    the kernel holds exactly what the new copy lists."""
    synced()
    rows = [f"185.221.{i // 200}.{i % 200 + 1}" for i in range(600)] + [
        f"host{i}.evil.example" for i in range(60)]
    publish("cert", "\n".join(rows) + "\n", serial=2)
    _sync_json(cli)
    taken = _spy(monkeypatch)
    new = reorder(rows)
    publish("cert", "\n".join(new) + "\n", serial=3)
    doc = _sync_json(cli)
    assert taken == [way]
    sets = enforced()
    assert set(sets["v4"]) == {r for r in new if r[-1].isdigit()}
    assert set(sets["names"]) == {r for r in new if not r[-1].isdigit()}
    assert doc["feeds"][0]["accepted"] == len(new)


def test_a_list_with_a_dated_header_and_crlf_lines_is_read_in_order(
        synced: Callable[..., Path], cli: Cli, publish: Callable[..., Any],
        enforced: Callable[[], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The shape of public lists: a comment header that changes at every copy, CRLF line
    ends, a blank last line. The header lines are blanks to the comparison, so the copies still
    pair row for row; the kernel holds what the new copy lists."""
    synced()
    rows = [f"185.222.{i // 200}.{i % 200 + 1}" for i in range(500)]

    def text(stamp: str, values: list[str]) -> str:
        return f"# blocklist, generated {stamp}\r\n# one address a line\r\n\r\n" + "".join(
            f"{v}\r\n" for v in values)

    publish("cert", text("2026-12-01T10:00", rows), serial=2)
    _sync_json(cli)
    taken = _spy(monkeypatch)
    new = [r for k, r in enumerate(rows) if k % 50] + ["77.88.99.10", "77.88.99.11"]
    publish("cert", text("2026-12-01T11:00", new), serial=3)
    doc = _sync_json(cli)
    assert taken == ["in order"]
    assert set(enforced()["v4"]) == set(new)
    assert doc["feeds"][0]["accepted"] == len(new)
    why = cli("why", "77.88.99.11", "--json").json
    assert why["sources"][0]["ref"].endswith(f":{3 + len(new)}"), why


def test_a_previous_copy_changed_on_disk_is_not_read_by_difference(
        synced: Callable[..., Path], cli: Cli, publish: Callable[..., Any], state_dir: Path,
        enforced: Callable[[], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy altered on disk since it was verified is never the base of a reading: it fails
    its check and is set aside (and its bytes would not match the result's key either), so
    the new copy is read in full and nothing of the altered one is enforced."""
    synced()
    for path in state_dir.rglob("indicators.txt"):
        path.write_text(LIST.replace("91.92.109.7", "9.9.9.9"))
    taken = _spy(monkeypatch)
    publish("cert", LIST + "77.88.99.1\n", serial=2)
    doc = _sync_json(cli)
    assert taken == [] and doc["feeds"][0]["accepted"] == 6
    assert "91.92.109.7" in enforced()["v4"] and "9.9.9.9" not in enforced()["v4"]


def test_the_last_good_copy_is_read_and_hashed_once_a_sync(
        synced: Callable[..., Path], cli: Cli, publish: Callable[..., Any],
        enforced: Callable[[], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A new manifest with one payload changed and one not: the copy verified at the start of
    the sync serves both the test "is this payload unchanged" and the result's key, instead of
    reading and hashing each payload again; the unchanged payload is not downloaded."""
    from agent.state.feeds import CachedFeed
    from agent.verify import feed as signed

    synced()
    publish("cert", LIST, "77.88.99.2\nsame.example\n", serial=2)
    _sync_json(cli)
    reads: list[str] = []
    real_read = CachedFeed.read

    def read(self: CachedFeed, name: str) -> bytes:
        reads.append(name)
        return real_read(self, name)

    hashed: list[int] = []
    real_check = signed.check_payload

    def check(p: Any, data: bytes) -> None:
        hashed.append(len(data))
        real_check(p, data)

    monkeypatch.setattr(CachedFeed, "read", read)
    monkeypatch.setattr(signed, "check_payload", check)
    publish("cert", LIST + "77.88.99.1\n", "77.88.99.2\nsame.example\n", serial=3)
    doc = _sync_json(cli)
    assert doc["feeds"][0]["accepted"] == 8 and doc["feeds"][0]["error"] is None
    assert sorted(reads) == sorted(["manifest.json", "manifest.json.minisig", "indicators.txt",
                                    "indicators-2.txt"])  # each once: verifying the copy
    assert len(hashed) == 4  # the copy's two payloads, then the new manifest's two
    assert {"77.88.99.1", "77.88.99.2"} <= set(enforced()["v4"])


def test_a_result_keyed_by_the_verified_hashes_is_the_one_hashing_keys(
        synced: Callable[..., Path], state_dir: Path) -> None:
    """The key of a validated result (agent.feedcache) is the same whether the payloads'
    sha256 come from their verification or are computed: a kept result is found either way."""
    from agent import feedcache
    from agent.config import load
    from agent.state import StateStore
    from agent.verify import feed as signed

    config = load(synced())
    feed = config.feeds[0]
    cached = StateStore(state_dir).load_feed("cert")
    assert cached is not None
    verified = signed.load_cached(feed, cached)
    assert verified.hashes  # what verification checked

    class Bare:
        payloads = verified.payloads

    assert feedcache.digest_key(feed, verified, "p") == feedcache.digest_key(feed, Bare(), "p")
