"""`relais_notification_deliveries_total`: every channel and outcome has its series from
the start (a failure ratio is defined before the first failure), and a delivery counts
when it is settled, never while it is pending."""

from __future__ import annotations

from prometheus_client import REGISTRY

from relais_notifications.service_layer import metrics

NAME = "relais_notification_deliveries_total"


def counted(channel: str, outcome: str) -> float | None:
    return REGISTRY.get_sample_value(NAME, {"channel": channel, "outcome": outcome})


def test_every_channel_and_outcome_has_its_series():
    for channel in ("email", "sms", "letter", "adviser_screen"):
        for outcome in ("sent", "failed"):
            assert counted(channel, outcome) is not None, (channel, outcome)
    assert counted("email", "pending") is None


def test_a_settled_delivery_counts_once_a_pending_one_not_at_all():
    sent, failed = counted("sms", "sent") or 0.0, counted("sms", "failed") or 0.0
    metrics.settled("sms", "pending")
    metrics.settled("sms", "sent")
    metrics.settled("sms", "failed")
    metrics.settled("sms", "failed")
    assert (counted("sms", "sent"), counted("sms", "failed")) == (sent + 1, failed + 2)
    assert counted("sms", "pending") is None
