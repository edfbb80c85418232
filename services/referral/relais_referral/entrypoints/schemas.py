"""The JSON bodies of the adviser API."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

SITE_ID = r"^[a-z0-9][a-z0-9-]{1,80}$"
# PostgreSQL cannot store NUL, and a name or an address has no business holding
# control characters; free text may hold line breaks and tabs.
ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
FREE_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
CODE = r"^[a-z0-9][a-z0-9.-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ContactChannel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    LETTER = "letter"
    NONE = "none"


class PostalAddressIn(Strict):
    street: str = Field(min_length=1, max_length=200, pattern=ONE_LINE)
    postcode: str = Field(pattern=r"^\d{5}$")
    city: str = Field(min_length=1, max_length=100, pattern=ONE_LINE)


class ContactIn(Strict):
    channel: ContactChannel = Field(description="How the citizen wants to hear back.")
    email: EmailStr | None = None
    phone: str | None = Field(None, pattern=r"^\+?[0-9 .]{8,20}$")
    postal_address: PostalAddressIn | None = None

    @model_validator(mode="after")
    def address_for_channel(self) -> ContactIn:
        needed = {"email": self.email, "sms": self.phone, "letter": self.postal_address}
        if self.channel.value in needed and needed[self.channel.value] is None:
            field = {"email": "email", "sms": "phone", "letter": "postal_address"}[self.channel.value]
            raise ValueError(f"{field} is required when the contact channel is {self.channel.value}")
        return self


class CitizenIn(Strict):
    given_name: str = Field(min_length=1, max_length=100, pattern=ONE_LINE)
    family_name: str = Field(min_length=1, max_length=100, pattern=ONE_LINE)
    birth_date: date | None = None
    contact: ContactIn


class CitizenCompletionIn(Strict):
    """What a procedure needs and the visit lacked; the fields given are set, the others kept."""

    birth_date: date | None = None
    email: EmailStr | None = None
    phone: str | None = Field(None, pattern=r"^\+?[0-9 .]{8,20}$")
    postal_address: PostalAddressIn | None = None


class VisitIn(Strict):
    site_id: str = Field(pattern=SITE_ID, description="Where the visit takes place (site or permanence).")
    channel: Literal["in_person", "phone", "video"] = "in_person"
    citizen: CitizenIn


class VisitOut(BaseModel):
    visit_id: UUID
    site_id: str
    opened_at: datetime


class ConsentIn(Strict):
    given: bool = Field(description="The citizen agrees to share this request with the operator.")
    given_at: datetime | None = None

    @model_validator(mode="after")
    def must_be_given(self) -> ConsentIn:
        if not self.given:
            raise ValueError("the citizen's consent is required to refer to an operator")
        return self


class ReferralIn(Strict):
    operator: str = Field(min_length=2, max_length=40, pattern=CODE, examples=["caf"])
    procedure: str = Field(min_length=3, max_length=100, pattern=CODE, examples=["caf.prime-activite"])
    summary: str = Field(min_length=1, max_length=4000, pattern=FREE_TEXT)
    consent: ConsentIn


class InfoIn(Strict):
    message: str = Field(min_length=1, max_length=4000, pattern=FREE_TEXT,
                         description="The information the operator asked for.")


class CancelIn(Strict):
    reason: str | None = Field(None, max_length=500, pattern=FREE_TEXT,
                               examples=["La personne a renoncé à sa demande."])


class CloseOutcome(StrEnum):
    RESOLVED = "resolved"
    PARTIALLY_RESOLVED = "partially_resolved"
    NOT_RESOLVED = "not_resolved"
    CITIZEN_UNREACHABLE = "citizen_unreachable"


class CloseIn(Strict):
    outcome: CloseOutcome


class RerouteIn(Strict):
    operator: str = Field(min_length=2, max_length=40, pattern=CODE, examples=["caf"])
    procedure: str = Field(min_length=3, max_length=100, pattern=CODE, examples=["caf.rsa"])
    summary: str | None = Field(None, min_length=1, max_length=4000, pattern=FREE_TEXT,
                                description="Defaults to the rejected referral's summary.")
    consent: ConsentIn


class ReferralCreated(BaseModel):
    referral_id: UUID
    status: str


class TimelineEntry(BaseModel):
    event: str
    status: str | None
    actor: str
    at: datetime
    detail: dict[str, Any]


class ReferralOut(BaseModel):
    referral_id: UUID
    visit_id: UUID
    operator: str
    procedure: str
    site_id: str
    status: str
    requested_at: datetime
    due_at: datetime | None
    overdue: bool
    supersedes_referral_id: UUID | None
    timeline: list[TimelineEntry]


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires (it ends sooner if revoked, or if the "
                                        "account is closed or its role, site or department change)")
