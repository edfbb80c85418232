"""A referral's messages for its journey page: asked of the notifications service's ops
API; when it does not answer, the reason, and the page shows the rest."""

from __future__ import annotations

from relais_ops.domain.messages import Messages, in_order
from relais_ops.service_layer.ops_api import OpsApi, Unanswered


async def of_referral(api: OpsApi, referral_id: str) -> Messages:
    try:
        found = await api.deliveries(referral_id)
    except Unanswered as exc:
        return Messages(error=str(exc))
    return Messages(in_order(found))
