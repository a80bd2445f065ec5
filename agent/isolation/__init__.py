"""The kill switch's state: the pure model, its record, the names it keeps open (resolved before
the cut) and what is shown of it; agent.backends.killswitch applies it with nft."""

from agent.isolation.model import IsolationState, Quarantine, split_allow
from agent.isolation.record import load, now, save
from agent.isolation.resolve import resolve

__all__ = ["IsolationState", "Quarantine", "load", "now", "resolve", "save",
           "split_allow"]
