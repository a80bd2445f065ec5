"""The state directory's single owner: every file in `state_dir` is read and written here
(StateStore), with the feed cache's records and the building of status.json."""

from agent.state.feeds import CachedFeed, FeedRecord
from agent.state.store import StateStore

__all__ = ["CachedFeed", "FeedRecord", "StateStore"]
