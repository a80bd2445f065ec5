"""The kill switch's state: the pure model, its record, its clocks, the intent for the current
configuration, the names it keeps open (never waited on), the preflight and what is shown of it;
agent.backends.killswitch applies it with nft."""

from agent.isolation.intent import current, desired, drift
from agent.isolation.model import IsolationState, Quarantine, split_allow
from agent.isolation.record import load, now, save

__all__ = ["IsolationState", "Quarantine", "current", "desired", "drift", "load", "now", "save",
           "split_allow"]
