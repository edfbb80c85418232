"""The HTTP API's bodies. Input is checked here for shape (types, patterns, known
codes), then by the domain rules; either way a 422 names the field at fault."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from relais_sites.domain import Address, Operator, Site, SiteKind, SiteRecord, Slot
from relais_sites.domain.codes import (
    CLOCK,
    DEPARTMENT,
    MAX_CITY,
    MAX_NAME,
    MAX_PLACE,
    MAX_SLOTS,
    MAX_STREET,
    POSTCODE,
    SITE_ID,
)

SiteId = Annotated[str, Field(pattern=SITE_ID.pattern, examples=["agen-leon-blum-poste"],
                              description="A lowercase slug.")]
Clock = Annotated[str, Field(pattern=CLOCK.pattern, examples=["09:00"], description="HH:MM, local time.")]
#: Free text on one line: no control character (PostgreSQL refuses NUL in text: a 500).
ONE_LINE = r"^[^\x00-\x1f\x7f]*$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AddressBody(_In):
    street: str | None = Field(None, min_length=1, max_length=MAX_STREET, pattern=ONE_LINE,
                               examples=["2 place Léon Blum"])
    postcode: str = Field(pattern=POSTCODE.pattern, examples=["47000"])
    city: str = Field(min_length=1, max_length=MAX_CITY, pattern=ONE_LINE, examples=["Agen"])


class SlotBody(_In):
    weekday: int = Field(ge=1, le=7, description="ISO weekday: 1 = Monday … 7 = Sunday.")
    opens: Clock
    closes: Clock
    place: str | None = Field(None, min_length=1, max_length=MAX_PLACE, pattern=ONE_LINE,
                              description="For a mobile permanence or a bus: where this slot is held.")


class SiteBody(_In):
    """A site's full description; posting it again unchanged changes nothing."""

    site_id: SiteId
    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=ONE_LINE,
                      examples=["France Services Agen Léon Blum"])
    kind: SiteKind
    address: AddressBody
    department: str = Field(pattern=DEPARTMENT.pattern, examples=["47"],
                            description="Department code: '47', '2A', '974'…")
    operators: list[Operator] = Field(min_length=1, description="The operators the site serves.")
    parent_site_id: SiteId | None = Field(
        None, description="Required for a mobile permanence (optional for a bus): the fixed site or "
                          "post office it depends on.")
    schedule: list[SlotBody] = Field(default_factory=list, max_length=MAX_SLOTS,
                                     description="Opening slots; for a mobile permanence or a bus each "
                                                 "slot says where it is held.")

    def to_domain(self) -> Site:
        """Raises `InvalidSite` when the description breaks a registry rule."""
        return Site(
            site_id=self.site_id, name=self.name, kind=self.kind.value,
            address=Address(postcode=self.address.postcode, city=self.address.city,
                            street=self.address.street),
            department=self.department, operators=tuple(o.value for o in self.operators),
            schedule=tuple(Slot(s.weekday, s.opens, s.closes, s.place) for s in self.schedule),
            parent_site_id=self.parent_site_id,
        )


class AddressView(BaseModel):
    street: str | None = None
    postcode: str
    city: str


class SlotView(BaseModel):
    weekday: int
    opens: str
    closes: str
    place: str | None = None


class SiteView(BaseModel):
    site_id: str
    name: str
    kind: SiteKind
    address: AddressView
    department: str
    operators: list[Operator]
    parent_site_id: str | None = None
    schedule: list[SlotView]
    created_at: datetime
    updated_at: datetime
    retired_at: datetime | None = Field(None, description="Set once the site is retired.")

    @classmethod
    def of(cls, record: SiteRecord) -> SiteView:
        site = record.site
        return cls(
            site_id=site.site_id, name=site.name, kind=SiteKind(site.kind),
            address=AddressView(street=site.address.street, postcode=site.address.postcode,
                                city=site.address.city),
            department=site.department, operators=[Operator(o) for o in site.operators],
            parent_site_id=site.parent_site_id,
            schedule=[SlotView(weekday=s.weekday, opens=s.opens, closes=s.closes, place=s.place)
                      for s in site.schedule],
            created_at=record.created_at, updated_at=record.updated_at, retired_at=record.retired_at,
        )


class SiteList(BaseModel):
    count: int
    sites: list[SiteView]


class ErrorItem(BaseModel):
    field: str
    message: str


class ValidationErrorBody(BaseModel):
    detail: str
    errors: list[ErrorItem]


class ErrorBody(BaseModel):
    detail: str
