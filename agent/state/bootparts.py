"""boot/: the parts of enforced.nft (agent/backends/nft_boot.py), owned by the state store.

A part is written under a name no other content has before enforced.nft names it, and the
parts of the previous enforced.nft stay until the new one replaced it (`sweep`), so the boot
path always finds every part the file includes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

from agent.util.fsutil import atomic_write


class BootParts:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        return self.directory / name

    def save(self, name: str, text: str) -> Path:
        """Write the part unless it exists (its name stands for its content)."""
        path = self.path(name)
        if not path.is_file():
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(path, text.encode())
        return path

    def remove(self, names: Iterable[str]) -> None:
        """Parts found damaged: removed, so that the next write makes them again."""
        for name in names:
            self.path(name).unlink(missing_ok=True)

    def sweep(self, keep: Collection[str]) -> None:
        """Every part but `keep` (those the enforced.nft just written includes)."""
        if self.directory.is_dir():
            for entry in self.directory.iterdir():
                if entry.name not in keep:
                    entry.unlink(missing_ok=True)
