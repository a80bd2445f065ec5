"""The service (`blocklist-agent run`): the loop, when each feed is refreshed, the file
watchers and what systemd and the journal are told. What is enforced is pipeline.run's call."""
