"""Local override files: hand-written and CLI-managed entries, expiry, malformed lines."""

from __future__ import annotations

from pathlib import Path

from agent import overrides

NOW = 1_800_000_000


def test_hand_written_files_are_read(tmp_path: Path) -> None:
    (tmp_path / "partners.allow").write_text(
        "# partners we must always reach\n"
        "203.0.113.10 by=alice # teleradiology\n"
        "*.partner.example expires=2030-01-01T00:00:00Z\n"
        "\n"
        "not/valid\n"
        "evil.example colour=red\n"
    )
    (tmp_path / "incident-42.deny").write_text("c2.evil.example # seen in EDR\n")
    (tmp_path / "README").write_text("ignored: not .allow or .deny\n")
    ov = overrides.load(tmp_path, now=NOW)
    assert [(o.indicator.value, o.indicator.subdomains, o.reason, o.author) for o in ov.allow] == [
        ("203.0.113.10", False, "teleradiology", "alice"),
        ("partner.example", True, "", ""),
    ]
    assert ov.allow[1].expires == 1_893_456_000
    assert [o.indicator.value for o in ov.deny] == ["c2.evil.example"]
    assert ov.deny[0].where.endswith("incident-42.deny:1")
    assert [r.ref.rsplit(":", 1)[1] for r in ov.rejects] == ["5", "6"]


def test_expired_entries_are_set_aside(tmp_path: Path) -> None:
    (tmp_path / "x.allow").write_text("8.8.8.8 expires=2020-01-01T00:00:00Z # old\n")
    ov = overrides.load(tmp_path, now=NOW)
    assert ov.allow == () and [o.indicator.value for o in ov.expired] == ["8.8.8.8"]


def test_add_replace_and_remove(tmp_path: Path) -> None:
    local = tmp_path / "local.d"
    overrides.add(local, "allow", "8.8.8.8", reason="resolver", author="bob", expires=None,
                  now=NOW)
    entry = overrides.add(local, "allow", "8.8.8.8", reason="public resolver, checked",
                          author="carol", expires=NOW + 3600, now=NOW)
    overrides.add(local, "allow", "*.corp.example", reason="intranet", author="bob",
                  expires=None, now=NOW)
    assert entry.expires == NOW + 3600 and entry.author == "carol"
    ov = overrides.load(local, now=NOW)
    assert [(o.indicator.value, o.reason) for o in ov.allow] == [
        ("8.8.8.8", "public resolver, checked"), ("corp.example", "intranet")]
    (local / "hand.allow").write_text("8.8.8.8 # also here\n")
    removed, elsewhere = overrides.remove(local, "allow", "8.8.8.8")
    assert removed == 1 and elsewhere == [f"{local / 'hand.allow'}:1"]
    assert [o.indicator.value for o in overrides.load(local, now=NOW).allow] == [
        "corp.example", "8.8.8.8"]
    assert overrides.remove(local, "allow", "9.9.9.9") == (0, [])


def test_missing_directory_means_no_overrides(tmp_path: Path) -> None:
    assert overrides.load(tmp_path / "absent") == overrides.Overrides.empty()
