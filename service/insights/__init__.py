"""Saved views and alerts (issue 17): what an analyst keeps and what tells them when something moves.

* :mod:`.tables`: ``saved_views``, ``alert_rules``, ``alert_events`` (migration 0004).
* :mod:`.views`: named dashboard views per tenant (filters as :class:`~voce.service.analytics.Filters` writes them,
  a batch or the latest one, owner, shared flag), opened by a link.
* :mod:`.alerts`: alert rules on the whole selection, a topic, touchpoint, channel or segment (a threshold, or a
  significant change against the previous batch or period), evaluated when a batch finishes; the events feed.
* :mod:`.webhooks`: signed delivery of alert events to an allow-listed URL, retried in a background thread.
"""
