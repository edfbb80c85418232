"""What the notifications service tells Prometheus of its own work (`GET /metrics`, next
to the kit's metrics): each delivery counted once, when it is settled.

Where a delivery is settled, and when it is counted:
- by the delivery loop (e-mail, SMS): sent, or failed after its last attempt or a
  permanent refusal — counted after the transaction that marks it commits (a
  commit whose answer is lost, then found done by the retry, is not counted: at
  most once); an attempt that will be retried is not a settlement and is not counted;
- as it is stored (a letter, the adviser's screen: storing is delivering; a citizen's
  message that cannot be written: failed), or failed by an erasure while still
  pending — counted inside the consumer's transaction (the kit's consumer owns it
  and offers no hook after its commit): if that transaction rolls back after the count
  (the database lost at commit), the event is handled again and counted again. So
  these are counted at least once; a rare double count is accepted rather than a
  delivery never counted.

Labels: the channel and the outcome, never a referral, a delivery nor a person."""

from __future__ import annotations

from typing import get_args

from prometheus_client import Counter

from relais_notifications.domain.model import Channel, Status

SETTLED: tuple[Status, ...] = ("sent", "failed")

DELIVERIES = Counter(
    "relais_notification_deliveries_total",
    "Deliveries settled, by channel (email, sms, letter, adviser_screen) and outcome: sent, or failed "
    "(attempts exhausted, refused for good, message impossible to write, or erased before it went out). "
    "Each delivery is counted once when settled; retried attempts are not counted.",
    ["channel", "outcome"])

# Every series from the start at 0: a ratio of failures is defined before the first one.
for _channel in get_args(Channel):
    for _outcome in SETTLED:
        DELIVERIES.labels(_channel, _outcome)


def settled(channel: str, outcome: Status) -> None:
    """One delivery settled (`sent` or `failed`); a `pending` one is not counted."""
    if outcome in SETTLED:
        DELIVERIES.labels(channel, outcome).inc()
