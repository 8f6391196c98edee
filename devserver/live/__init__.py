"""The live feed: one encoded feed per watched run, shared by its subscribers, fed by one poller."""

from __future__ import annotations

from ._feed import FeedClosed, FeedHub, RunFeed, SubscriberLimit, planned_by
from ._stream import Subscription

__all__ = ["FeedClosed", "FeedHub", "RunFeed", "SubscriberLimit", "Subscription", "planned_by"]
