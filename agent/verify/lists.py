"""The rules of a signed single list (`list.txt` + `list.txt.minisig`), as pure functions.

A list has no manifest: what a manifest's serial, `issued` and `expires` do is done by the
timestamp minisign writes in the trusted comment (`timestamp:<unix>`, signed with the list, and
written by default by `minisign -S` and by `publish`). Without it rollback protection cannot
work: a replayed older list would silently unblock what the newer one added. So a list signed
without a timestamp (`minisign -t "my comment"`) is refused with an explanation, an older
timestamp is a rollback, the same timestamp over other content a replay, a timestamp ahead of
the clock is refused (it would freeze every later list out), and with the feed's `max_age` a
list older than that is stale like an expired manifest. A `feed:NAME` field in the comment
names the feed the list is for, like a manifest's `feed` field.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.config import FeedConfig
from agent.errors import VerifyError
from agent.util.timefmt import human_utc, iso_z
from agent.verify.manifest import LastAccepted, check_feed_name
from agent.verify.minisign import Signature, trusted_comment_field

MAX_CLOCK_SKEW = timedelta(minutes=5)
_KEEP = "the last good copy stays enforced"


def _when(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def check_name(sig: Signature, feed: FeedConfig, where: str) -> None:
    check_feed_name(trusted_comment_field(sig.trusted_comment, "feed") or "", feed.name, where)


def check_list(sig: Signature, sha256: str, feed: FeedConfig, now: datetime,
               last: LastAccepted | None, where: str) -> int:
    """The list's signed timestamp (its serial), once every rule holds; raises VerifyError."""
    check_name(sig, feed, where)
    ts = sig.timestamp
    if ts is None:
        raise VerifyError(
            "the list's signature carries no timestamp in its trusted comment "
            f"({sig.trusted_comment!r:.120}), so an older list replayed later could not be told "
            "from this one", where=where, reason="no-timestamp",
            hint="the publisher must sign with a timestamp: `minisign -S` without -t (its "
            "default comment is timestamp:<unix>\\tfile:<name>), or `blocklist-agent publish`; "
            f"{_KEEP}",
        )
    if last is not None and ts < last.serial:
        raise VerifyError(
            f"rollback: the list is signed at {human_utc(_when(ts))} (timestamp {ts}), older than "
            f"the last accepted one ({last.serial})", where=where, reason="rollback",
            hint=f"an old copy is being served (stale mirror or attack); {_KEEP}",
        )
    if last is not None and ts == last.serial and sha256 != last.sha256:
        raise VerifyError(
            f"replay ALARM: timestamp {ts} was already accepted with other content (list "
            f"sha256 {last.sha256}, this one {sha256})", where=where, reason="replay",
            hint="one timestamp signed over two lists means the signing key may be misused or "
            f"the tooling is broken: alert the security team and the publisher; {_KEEP}",
        )
    if _when(ts) > now + MAX_CLOCK_SKEW:
        raise VerifyError(
            f"the list is signed at {human_utc(_when(ts))}, ahead of this gateway's clock "
            f"({human_utc(now)}; tolerance {MAX_CLOCK_SKEW})", where=where, reason="future",
            hint=f"check the gateway clock and NTP (timedatectl status); if it is right, the "
            f"publisher's clock is wrong; {_KEEP}",
        )
    if feed.max_age is not None and _when(ts + feed.max_age) <= now:
        raise too_old(ts, feed, now, where)
    return ts


def too_old(ts: int, feed: FeedConfig, now: datetime, where: str) -> VerifyError:
    """A list past its max_age: frozen by the server or the publisher stopped signing."""
    age = timedelta(seconds=int(now.timestamp()) - ts)
    return VerifyError(
        f"the list is signed at {human_utc(_when(ts))}, {age} ago, more than this feed's "
        f"max_age ({timedelta(seconds=feed.max_age or 0)})", where=where, reason="expired",
        hint="the publisher must sign a fresh list (a frozen mirror serves an old one); "
        f"{_KEEP}. If this gateway's clock is wrong, fix NTP (timedatectl status)",
    )


def times(ts: int, feed: FeedConfig) -> tuple[str | None, str | None]:
    """`issued` and `expires` of the record, from the signed timestamp and the max_age now
    configured (status shows them; the stale check reads `expires` as for a manifest)."""
    if not ts:
        return None, None
    expires = iso_z(_when(ts + feed.max_age)) if feed.max_age is not None else None
    return iso_z(_when(ts)), expires
