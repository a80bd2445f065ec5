"""Files a root process may trust: the configuration, local_dir, key and CA files, the TSIG key.

Run as root (the service, or `sudo blocklist-agent -c FILE isolate`), the agent does what these
files say: a configuration writable by someone else could set `management: [0.0.0.0/0]`, a key
file replaced by another user makes their feed trusted. So, as sshd's StrictModes does, a file
is refused when it or a directory above it is not owned by root or can be written by its group or
by others (a sticky directory such as /tmp excepted: others cannot replace what root owns in it).
Not run as root, nothing is checked: the files are then only as trusted as the user running.
"""

from __future__ import annotations

import os
import pwd
import stat

STRICT_HINT = ("as root the agent only trusts files that only root can change: "
               "`chown root: PATH` and `chmod go-w PATH` (and the same for each directory above "
               "it), or keep the file under /etc/blocklist-agent")


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _why_not(st: os.stat_result, is_dir: bool) -> str | None:
    if st.st_uid != 0:
        return f"owned by {_owner(st.st_uid)}, not root"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        if is_dir and st.st_mode & stat.S_ISVTX:
            return None
        return f"writable by its group or by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def strict_problem(path: str, *, as_root: bool | None = None) -> str | None:
    """Why root must not trust `path`, or None (also when not root, or `path` is missing)."""
    if not (os.geteuid() == 0 if as_root is None else as_root):
        return None
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return None  # a missing file is reported by whoever reads it
    problem = _why_not(st, stat.S_ISDIR(st.st_mode))
    if problem:
        return f"{real} is {problem}"
    parent = os.path.dirname(real)
    while True:
        try:
            st = os.stat(parent)
        except OSError:
            return None
        problem = _why_not(st, True)
        if problem:
            return f"its directory {parent} is {problem}"
        if parent == os.path.dirname(parent):
            return None
        parent = os.path.dirname(parent)
