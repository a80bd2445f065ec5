"""Small rules and helpers shared by every stage: one definition each (time text, interface
names, host:port, external commands, crash-safe writes). Pure except `command` and `fsutil`."""
