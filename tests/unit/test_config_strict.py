"""Under root, files that others can change are refused (as sshd's StrictModes), and a file that
is not a configuration is never quoted.

`sudo blocklist-agent -c /tmp/evil.yaml isolate` must not let a user set the management
networks; `-c /etc/shadow` must not print a line of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigProblems, load
from agent.config.perms import strict_problem

Cli = Callable[..., Any]
NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the checks apply to root only")

SHADOW = ("root:$6$Zq9rT1bQ$0nlyR00tC4nR3adTh1sLine:19700:0:99999:7:::\n"
          "daemon:*:19700:0:99999:7:::\nhospital:$6$abc$SecretHashOfTheUser:19700:0:99999:7:::\n")


def _config(tmp_path: Path, text: str = "state_dir: state\n") -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


@root_only
@pytest.mark.parametrize(("owner", "mode", "why"), [
    (NOBODY, 0o644, "owned by nobody (uid 65534), not root"),
    (0, 0o664, "writable by its group or by others (mode 0664)"),
    (0, 0o646, "writable by its group or by others (mode 0646)"),
])
def test_config_others_can_change_is_refused_with_exit_2(
        tmp_path: Path, cli: Cli, owner: int, mode: int, why: str) -> None:
    path = _config(tmp_path, "firewall:\n  management: [0.0.0.0/0]\n")
    os.chown(path, owner, 0)
    path.chmod(mode)
    result = cli("-c", path, "isolate", "--reason", "x", "--yes")
    assert result.code == 2
    assert f"refused: {path} is {why}" in result.err
    assert "chmod go-w" in result.err


@root_only
def test_a_directory_others_can_write_is_refused_but_a_sticky_one_is_not(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    path = _config(shared)
    shared.chmod(0o777)
    assert strict_problem(str(path)) == f"its directory {shared} is writable by its group or by " \
        "others (mode 0777)"
    shared.chmod(0o1777)  # like /tmp: others cannot replace what root owns in it
    assert strict_problem(str(path)) is None
    assert strict_problem(str(path), as_root=False) is None


@root_only
def test_key_file_local_dir_and_ca_file_are_checked_too(tmp_path: Path, keypair: Any) -> None:
    key = tmp_path / "cert.pub"
    key.write_text(keypair[0].to_file_text())
    os.chown(key, NOBODY, 0)
    local = tmp_path / "local.d"
    local.mkdir()
    local.chmod(0o775)
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    ca.chmod(0o666)
    path = _config(tmp_path, f"""local_dir: {local}
feeds:
  - name: cert
    url: https://feeds.example.org/cert/manifest.json
    trusted_keys: [{key}]
    ca_file: {ca}
""")
    with pytest.raises(ConfigProblems) as info:
        load(path)
    problems = "\n".join(info.value.problems)
    assert f"local_dir: refused: {local} is writable by its group or by others" in problems
    assert f"feeds[0].trusted_keys[0]: refused: {key} is owned by nobody" in problems
    assert f"feeds[0].ca_file: refused: {ca} is writable by its group or by others" in problems


@pytest.mark.parametrize("text", [SHADOW, "password: Sup3rS3cret\ntoken: abcdef\n",
                                  "- Sup3rS3cret\n", 'key "tsig" {\n secret "c2VjcmV0";\n};\n',
                                  "root: [unclosed Sup3rS3cret\n"])
def test_a_file_that_is_not_a_configuration_is_never_quoted(tmp_path: Path, cli: Cli,
                                                            text: str) -> None:
    path = _config(tmp_path, text)
    path.chmod(0o600)
    result = cli("-c", path, "status")
    assert result.code == 2
    assert "not a blocklist-agent configuration" in result.err
    for secret in ("Sup3rS3cret", "$6$", "daemon", "hospital", "c2VjcmV0", "password", "token"):
        assert secret not in result.err and secret not in result.out
    json_result = cli("-c", path, "status", "--json")
    assert "Sup3rS3cret" not in json_result.out and "$6$" not in json_result.out


def test_a_typo_in_a_real_configuration_still_gets_its_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigProblems) as info:
        load(_config(tmp_path, "gaurds:\n  max_change: 0.5\n"))
    assert "did you mean 'guards'?" in info.value.problems[0]
