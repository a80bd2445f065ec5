"""Small rules and helpers shared by every stage: one definition each (time text, interface
names, host:port, running an external command). Pure except `command`, the one runner."""
