"""Which account a ProConnect sign-in opens. The agent is the provider's (issuer, `sub`),
bound to one account: an account already bound opens for that agent only. An account
not yet bound is bound on the agent's first sign-in through its e-mail address — only
when the provider vouches for the address (`email_verified`, or a provider that
releases verified addresses only: RELAIS_OIDC_EMAILS_VERIFIED). A sign-in never
creates an account; a closed account is refused."""

from __future__ import annotations

import asyncpg

from relais_kit.logs import log
from relais_referral.adapters import accounts as store
from relais_referral.service_layer.accounts import Account, account_of, is_demo

NO_ACCOUNT = "no_account"
EMAIL_NOT_VERIFIED = "email_not_verified"
BOUND_TO_ANOTHER_AGENT = "bound_to_another_agent"
CLOSED = "account_closed"


class Refused(Exception):
    """`reason`: one of the constants above (for the page and the logs)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def account_for(conn: asyncpg.Connection, issuer: str, subject: str, email: str,
                      email_verified: bool | None, *, emails_verified: bool, production: bool) -> Account:
    """The agent's account, bound on the way if it was not yet (in the caller's
    transaction); raises Refused."""
    row = await store.by_subject(conn, issuer, subject)
    bind = row is None
    if row is None:
        if not (email_verified is True or (emails_verified and email_verified is None)):
            raise Refused(EMAIL_NOT_VERIFIED)
        row = await store.by_email(conn, email)
        if row is None:
            raise Refused(NO_ACCOUNT)
        if row["oidc_subject"] is not None:
            if (row["oidc_issuer"], row["oidc_subject"]) != (issuer, subject):
                raise Refused(BOUND_TO_ANOTHER_AGENT)
            bind = False  # bound by this agent's other sign-in, a moment ago
    account = account_of(row)
    if production and is_demo(account.user_id):
        raise Refused(NO_ACCOUNT)
    if account.disabled:
        raise Refused(CLOSED)
    if bind:
        try:
            await store.bind(conn, account.user_id, issuer, subject)
        except asyncpg.UniqueViolationError:  # the agent bound to another account meanwhile
            raise Refused(BOUND_TO_ANOTHER_AGENT) from None
        log.info("proconnect_bound", user=account.user_id)
    return account
