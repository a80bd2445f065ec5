"""The configuration file itself (missing, a directory, not UTF-8, unreadable) and the
relative paths it names, which are taken from its own directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigProblems, load, loads
from agent.config import reader as config_reader
from agent.errors import ConfigError
from tests.config_helpers import y

# --------------------------------------------------------------------------------------------
# Paths


def test_relative_paths_are_resolved_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "agent.yaml"
    path.write_text(
        y("""
        state_dir: state
        local_dir: ./local.d
        metrics_file: ../metrics/agent.prom
        dns:
          zonefile: zones/rpz.zone
          tsig_key_file: tsig.key
        feeds:
          - name: own
            url: https://feeds.example.org/x
            signature: none
            ca_file: ca.pem
    """)
    )
    monkeypatch.chdir("/")  # the directory the agent happens to run in must not matter
    config = load(path)
    etc = tmp_path / "etc"
    assert config.state_dir == str(etc / "state")
    assert config.local_dir == str(etc / "local.d")
    assert config.metrics_file == str(tmp_path / "metrics" / "agent.prom")
    assert config.dns.zonefile == str(etc / "zones" / "rpz.zone")
    assert config.dns.tsig_key_file == str(etc / "tsig.key")
    assert config.feeds[0].ca_file == str(etc / "ca.pem")


def test_relative_config_path_and_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "agent.yaml").write_text("state_dir: st\nlocal_dir: /srv/local.d\n")
    monkeypatch.chdir(tmp_path)
    config = load("agent.yaml")
    assert config.path == "agent.yaml"
    assert config.state_dir == str(tmp_path / "st")
    assert config.local_dir == "/srv/local.d"


def test_loads_without_a_file_resolves_against_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert loads("state_dir: st\n").state_dir == str(tmp_path / "st")


def test_optional_paths_may_be_null() -> None:
    config = loads("metrics_file:\ndns:\n  control:\n  server:\n  tsig_key_file: null\n")
    assert config.metrics_file is None
    assert (config.dns.control, config.dns.server, config.dns.tsig_key_file) == (None,) * 3


# --------------------------------------------------------------------------------------------
# load(): the file itself


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: no such configuration file\n  what to do: give the right "
                              "path with -c")
    assert info.value.problems[0].startswith(f"{path}: no such configuration file — ")
    assert info.value.exit_code == 2
    assert isinstance(info.value, ConfigProblems) and len(info.value.problems) == 1


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a directory, not a configuration file"):
        load(tmp_path)


def test_load_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_bytes(b"state_dir: /var/lib/caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(path)


def test_load_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated: the test suite may run as root, which reads any file."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(config_reader, "open", refuse, raising=False)
    with pytest.raises(ConfigError, match="permission denied") as info:
        load(tmp_path / "agent.yaml")
    assert "run the command as root" in str(info.value)


def test_load_accepts_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_bytes(b"\xef\xbb\xbfstate_dir: /srv/x\n")
    assert load(path).state_dir == "/srv/x"
