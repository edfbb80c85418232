"""The checks: pure functions from what the kit sent and what it read back (an
`Observation`) to one verdict per check, with a reason for every failure."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rfc3339_validator import validate_rfc3339

from relais_conformance.contract import FUTURE_EVENT, TYPE_PREFIX, TYPE_RE, Contract, problems

# Scenario roles: each names one referral the kit routes (or, for `unknown-type`,
# only tells about with an unknown event type).
ROUTED = "routed"  # a plain routed referral: acknowledged, then answered
DUPLICATE = "duplicate"  # its referral.routed record is delivered twice
UNKNOWN_FIELDS = "unknown-fields"  # routed with extra fields and headers
UNKNOWN_TYPE = "unknown-type"  # only a referral.escalated.v1 (unknown type)
UNKNOWN_TYPE_NEXT = "unknown-type-next"  # routed right after it, same partition
INFO = "info"  # routed, then referral.info_provided
INFO_NEXT = "info-next"  # routed right after the info_provided, same partition
CANCEL = "cancel"  # routed, acknowledged, then referral.cancelled
REMINDER = "reminder"  # routed, then referral.reminder
REMINDER_NEXT = "reminder-next"  # routed right after the reminder, same partition
MOVED = "moved"  # routed with personal data sealed for another referral id
MOVED_NEXT = "moved-next"  # routed right after it, same partition

ACK = "operator.acknowledged"
ANSWERED = "operator.answered"
REJECTED = "operator.rejected"
INFO_REQUESTED = "operator.info_requested"
OUTCOMES = (ANSWERED, REJECTED, INFO_REQUESTED)
ONCE_PER_REFERRAL = (ACK, ANSWERED, REJECTED)
MAX_REASONS = 20

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass
class Settings:
    operator: str
    ack_within: float = 30.0
    answer_within: float = 60.0
    quiet_period: float = 5.0


@dataclass
class Sent:
    """An inbox record the kit sent, `at` seconds after the run started."""

    role: str
    name: str
    referral_id: str
    ce_id: str
    at: float
    partition: int = -1


@dataclass
class Reply:
    """An outbox record read during the run, `arrived` seconds after it started."""

    arrived: float
    partition: int
    offset: int
    key: bytes | None
    headers: list[tuple[str, bytes | None]]
    value: bytes | None
    data: dict[str, Any] | None = field(init=False)
    attrs: dict[str, str] = field(init=False)
    header_problems: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.attrs, self.header_problems = {}, []
        for name, raw in self.headers:
            try:
                self.attrs[name.lower()] = raw.decode("utf-8") if raw is not None else ""
            except UnicodeDecodeError:
                self.header_problems.append(f"header {name} is not UTF-8")
        try:
            parsed = json.loads(self.value.decode("utf-8")) if self.value is not None else None
        except (UnicodeDecodeError, ValueError, RecursionError):
            parsed = None
        self.data = parsed if isinstance(parsed, dict) else None

    @property
    def ce_id(self) -> str:
        return self.attrs.get("ce_id", "")

    @property
    def ce_type(self) -> str:
        return self.attrs.get("ce_type", "")

    @property
    def name(self) -> str | None:
        """`fr.franceservices.operator.answered.v1` -> `operator.answered` (v1 only)."""
        match = TYPE_RE.match(self.ce_type)
        return match["name"] if match and match["major"] == "1" else None

    @property
    def key_text(self) -> str | None:
        return self.key.decode("utf-8", errors="replace") if self.key is not None else None

    @property
    def referral_id(self) -> str | None:
        """What the reply is about: `data.referral_id`, else the record key."""
        if self.data is not None and isinstance(self.data.get("referral_id"), str):
            return str(self.data["referral_id"])
        return self.key_text

    @property
    def where(self) -> str:
        return f"outbox[{self.partition}]@{self.offset}"

    def describe(self) -> str:
        return f"{self.name or self.ce_type or 'record without ce_type'} ce_id={self.ce_id or '-'} ({self.where})"


@dataclass
class Observation:
    settings: Settings
    sent: list[Sent]
    replies: list[Reply]
    ended: float
    encrypted: bool = True

    def referral(self, role: str) -> str | None:
        return next((s.referral_id for s in self.sent if s.role == role), None)

    def sent_event(self, role: str, name: str) -> Sent | None:
        return next((s for s in self.sent if s.role == role and s.name == name), None)

    def replies_for(self, referral_id: str | None) -> list[Reply]:
        return [r for r in self.replies if referral_id is not None and r.referral_id == referral_id]

    @property
    def kit_referrals(self) -> dict[str, str]:
        """referral id -> role, for every referral the kit wrote about."""
        return {s.referral_id: s.role for s in self.sent}

    @property
    def routed_referrals(self) -> set[str]:
        return {s.referral_id for s in self.sent if s.name == "referral.routed"}


@dataclass
class CheckResult:
    name: str
    title: str
    status: str
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "status": self.status,
                "failures": self.failures, "notes": self.notes}


def _result(name: str, title: str, failures: list[str], notes: list[str] | None = None) -> CheckResult:
    shown = failures[:MAX_REASONS]
    if len(failures) > MAX_REASONS:
        shown.append(f"... and {len(failures) - MAX_REASONS} more")
    return CheckResult(name, title, FAIL if failures else PASS, shown, notes or [])


def _types(replies: list[Reply]) -> str:
    return ", ".join(r.name or r.ce_type or "?" for r in replies) or "none"


def acknowledged_in_time(obs: Observation, role: str, what: str) -> tuple[str | None, float | None]:
    """(reason it fails, or None; seconds it took)."""
    ref, routed = obs.referral(role), obs.sent_event(role, "referral.routed")
    if ref is None or routed is None:
        return f"{what}: the kit did not send it", None
    replies = obs.replies_for(ref)
    acks = [r for r in replies if r.name == ACK]
    limit = obs.settings.ack_within
    if not acks:
        return (f"{what} {ref}: no {ACK} within {limit:g} s of its referral.routed "
                f"(replies seen for it: {_types(replies)})"), None
    took = acks[0].arrived - routed.at
    if took > limit:
        return f"{what} {ref}: {ACK} came {took:.1f} s after referral.routed, later than --ack-within {limit:g} s", took
    return None, took


# --- the scenarios ----------------------------------------------------------------


def check_acknowledged(obs: Observation) -> CheckResult:
    reason, took = acknowledged_in_time(obs, ROUTED, "routed referral")
    notes = [f"acknowledged in {took:.1f} s"] if took is not None else []
    return _result("acknowledged", f"a routed referral is acknowledged within {obs.settings.ack_within:g} s",
                   [reason] if reason else [], notes)


def check_answered(obs: Observation) -> CheckResult:
    title = (f"a routed referral is then answered, rejected or asked about (info_requested) within "
             f"{obs.settings.answer_within:g} s")
    ref, routed = obs.referral(ROUTED), obs.sent_event(ROUTED, "referral.routed")
    if ref is None or routed is None:
        return _result("answered", title, ["the kit did not send its routed referral"])
    replies = obs.replies_for(ref)
    outcomes = [r for r in replies if r.name in OUTCOMES]
    limit = obs.settings.answer_within
    if not outcomes:
        return _result("answered", title, [f"routed referral {ref}: no {', '.join(OUTCOMES)} within {limit:g} s "
                                           f"(replies seen for it: {_types(replies)})"])
    took = outcomes[0].arrived - routed.at
    if took > limit:
        return _result("answered", title, [f"routed referral {ref}: {outcomes[0].name} came {took:.1f} s after "
                                           f"referral.routed, later than --answer-within {limit:g} s"])
    return _result("answered", title, [], [f"{outcomes[0].name} in {took:.1f} s"])


def check_duplicate_delivery(obs: Observation) -> CheckResult:
    title = "the same event delivered twice has one effect: one ce_id per referral and reply type"
    failures: list[str] = []
    notes: list[str] = []
    ref = obs.referral(DUPLICATE)
    if not any(r.name == ACK for r in obs.replies_for(ref)):
        failures.append(f"duplicated referral {ref}: never acknowledged, so de-duplication could not be observed")
    kit = obs.kit_referrals
    ids: dict[tuple[str, str], list[str]] = defaultdict(list)
    copies = 0
    for reply in obs.replies:
        if reply.referral_id in kit and reply.name in ONCE_PER_REFERRAL:
            bucket = ids[(reply.referral_id, reply.name)]
            if reply.ce_id in bucket:
                copies += 1
            else:
                bucket.append(reply.ce_id)
    for (referral_id, name), ce_ids in ids.items():
        if len(ce_ids) > 1:
            failures.append(f"{kit[referral_id]} referral {referral_id}: {len(ce_ids)} {name} with different "
                            f"ce_id ({', '.join(ce_ids)}); expected one (re-sends must keep the same ce_id)")
    if copies:
        # What the contract asks when a routed referral already answered is delivered again
        # (the platform lost its broker and asks for the replies again): the same ce_ids.
        notes.append(f"{copies} reply(ies) re-sent with the same ce_id (as the contract asks on a re-delivered "
                     "referral.routed; ce_id is the dedup key)")
    return _result("duplicate-delivery", title, failures, notes)


def check_unknown_fields(obs: Observation) -> CheckResult:
    reason, took = acknowledged_in_time(obs, UNKNOWN_FIELDS, "referral with unknown fields and headers")
    return _result("unknown-fields", "unknown data fields (top level and in `site`) and ce_ headers are tolerated",
                   [reason] if reason else [], [f"acknowledged in {took:.1f} s"] if took is not None else [])


def check_unknown_event_type(obs: Observation) -> CheckResult:
    title = f"an unknown event type ({FUTURE_EVENT}.v1) is ignored and the next event is still processed"
    failures: list[str] = []
    ref = obs.referral(UNKNOWN_TYPE)
    for reply in obs.replies_for(ref):
        failures.append(f"referral {ref} only got an unknown {TYPE_PREFIX}{FUTURE_EVENT}.v1, "
                        f"yet the consumer replied {reply.describe()}")
    reason, _ = acknowledged_in_time(obs, UNKNOWN_TYPE_NEXT, "referral routed right after the unknown type "
                                     "(same partition)")
    if reason:
        failures.append(reason + " — did the consumer stop or stall on the unknown type?")
    return _result("unknown-event-type", title, failures)


def check_info_provided(obs: Observation) -> CheckResult:
    title = "referral.info_provided is handled: an info_requested is followed by an answer; nothing stalls"
    failures: list[str] = []
    ref = obs.referral(INFO)
    info = obs.sent_event(INFO, "referral.info_provided")
    if info is None:
        return _result("info-provided", title, [f"referral {ref} was never acknowledged, so the kit did not send "
                                                "it referral.info_provided"])
    replies = obs.replies_for(ref)
    asked = [r for r in replies if r.name == INFO_REQUESTED]
    notes = []
    if asked:
        last_question = asked[-1].arrived
        limit = info.at + obs.settings.answer_within
        finals = [r for r in replies if r.name in (ANSWERED, REJECTED) and r.arrived >= last_question]
        if not finals:
            failures.append(f"referral {ref}: the consumer sent {INFO_REQUESTED}, got referral.info_provided, but "
                            f"sent no {ANSWERED} or {REJECTED} after it")
        elif finals[0].arrived > limit:
            failures.append(f"referral {ref}: {finals[0].name} came {finals[0].arrived - info.at:.1f} s after "
                            f"referral.info_provided, later than --answer-within {obs.settings.answer_within:g} s")
        else:
            notes.append(f"{INFO_REQUESTED} then {finals[0].name}")
    else:
        notes.append(f"the consumer did not send {INFO_REQUESTED}: info_provided only had to be tolerated")
    reason, _ = acknowledged_in_time(obs, INFO_NEXT, "referral routed right after referral.info_provided "
                                     "(same partition)")
    if reason:
        failures.append(reason + " — did the consumer stop on referral.info_provided?")
    return _result("info-provided", title, failures, notes)


def check_cancellation(obs: Observation) -> CheckResult:
    title = (f"after referral.cancelled, no new reply about that referral (quiet period "
             f"{obs.settings.quiet_period:g} s)")
    ref = obs.referral(CANCEL)
    cancel = obs.sent_event(CANCEL, "referral.cancelled")
    if cancel is None:
        return _result("cancellation", title, [f"referral {ref} was never acknowledged, so the kit did not cancel "
                                               "it"])
    replies = obs.replies_for(ref)
    before = {r.ce_id for r in replies if r.arrived <= cancel.at}
    failures = [f"referral {ref}: {r.describe()} came {r.arrived - cancel.at:.1f} s after referral.cancelled "
                "(a cancelled referral must get no new reply)"
                for r in replies if r.arrived > cancel.at and r.ce_id not in before]
    notes = []
    if obs.ended < cancel.at + obs.settings.quiet_period:
        notes.append(f"observed only {obs.ended - cancel.at:.1f} s after the cancellation")
    return _result("cancellation", title, failures, notes)


def check_reminder(obs: Observation) -> CheckResult:
    reason, _ = acknowledged_in_time(obs, REMINDER_NEXT, "referral routed right after referral.reminder "
                                     "(same partition)")
    failures = [reason + " — did the consumer stop on referral.reminder?"] if reason else []
    return _result("reminder", "referral.reminder is tolerated (the next event is still processed)", failures)


def check_personal_data_binding(obs: Observation) -> CheckResult:
    title = "personal data sealed for another referral is refused (decrypted referral_id must match)"
    if not obs.encrypted:
        return CheckResult("personal-data-binding", title, SKIP,
                           notes=["this contract's referral.routed has no personal_data (not encrypted)"])
    failures = []
    ref = obs.referral(MOVED)
    for reply in obs.replies_for(ref):
        if reply.name in (ACK, ANSWERED, INFO_REQUESTED):
            failures.append(f"referral {ref}: its personal_data decrypts to another referral_id, yet the consumer "
                            f"replied {reply.describe()}")
    reason, _ = acknowledged_in_time(obs, MOVED_NEXT, "referral routed right after it (same partition)")
    if reason:
        failures.append(reason + " — did the consumer stop on the refused personal data?")
    return _result("personal-data-binding", title, failures)


# --- every reply ------------------------------------------------------------------


def check_reply_schema(obs: Observation, contract: Contract) -> CheckResult:
    failures = []
    for reply in obs.replies:
        name = reply.name
        if name not in contract.operator_events:
            continue  # reported by reply-headers
        if reply.data is None:
            failures.append(f"{reply.describe()}: record value is not a UTF-8 JSON object")
            continue
        found = problems(contract.validators[name], reply.data)
        if found:
            failures.append(f"{reply.describe()} about {reply.referral_id}: invalid against "
                            f"schemas/events/{name}.v1.json: {'; '.join(found)}")
    return _result("reply-schema", "every reply is valid against its schema (schemas/events/<name>.v1.json)", failures)


def check_reply_headers(obs: Observation, contract: Contract) -> CheckResult:
    operator = obs.settings.operator
    failures: list[str] = []
    notes: list[str] = []
    known = [f"{TYPE_PREFIX}{n}.v1" for n in contract.operator_events]
    by_id: dict[str, set[tuple[str | None, str]]] = defaultdict(set)
    without_time = 0
    for reply in obs.replies:
        at = f"{reply.describe()} about {reply.referral_id}"
        attrs = reply.attrs
        failures += [f"{at}: {p}" for p in reply.header_problems]
        missing = [h for h in ("ce_specversion", "ce_id", "ce_source", "ce_type", "content-type") if not attrs.get(h)]
        if missing:
            failures.append(f"{at}: missing header(s) {', '.join(missing)}")
        if attrs.get("ce_specversion") not in (None, "", "1.0"):
            failures.append(f"{at}: ce_specversion is {attrs['ce_specversion']!r}, expected '1.0'")
        if attrs.get("ce_source") and attrs["ce_source"] != f"/operators/{operator}":
            failures.append(f"{at}: ce_source is {attrs['ce_source']!r}, expected '/operators/{operator}'")
        if reply.ce_type and reply.ce_type not in known:
            failures.append(f"{at}: ce_type {reply.ce_type!r} is not an operator event of the contract "
                            f"(expected one of {', '.join(known)})")
        content_type = attrs.get("content-type")
        if content_type and content_type.split(";")[0].strip().lower() != "application/json":
            failures.append(f"{at}: content-type is {content_type!r}, expected 'application/json'")
        if "ce_time" in attrs:
            if not validate_rfc3339(attrs["ce_time"]):
                failures.append(f"{at}: ce_time {attrs['ce_time']!r} is not an RFC 3339 time")
        else:
            without_time += 1
        subject = attrs.get("ce_subject")
        if subject is not None and reply.referral_id is not None and subject != reply.referral_id:
            failures.append(f"{at}: ce_subject is {subject!r}, expected the referral id {reply.referral_id!r}")
        if reply.ce_id:
            by_id[reply.ce_id].add((reply.referral_id, reply.name or reply.ce_type))
    for ce_id, events in by_id.items():
        if len(events) > 1:
            described = ", ".join(sorted(f"{name} about {ref}" for ref, name in events))
            failures.append(f"ce_id {ce_id} is used for {len(events)} different events ({described}); "
                            "ce_id must be unique per event")
    if without_time:
        notes.append(f"{without_time} reply(ies) without ce_time (operators should send it)")
    return _result("reply-headers", f"every reply has the CloudEvents headers (ce_source=/operators/{operator}, "
                   "ce_specversion=1.0, an operator ce_type, content-type application/json, a ce_id)", failures, notes)


def check_reply_key(obs: Observation) -> CheckResult:
    failures = []
    for reply in obs.replies:
        if reply.key is None:
            failures.append(f"{reply.describe()} about {reply.referral_id}: no record key "
                            "(expected the referral id)")
        elif reply.data is not None and isinstance(reply.data.get("referral_id"), str) \
                and reply.key_text != reply.data["referral_id"]:
            failures.append(f"{reply.describe()}: record key is {reply.key_text!r}, expected the referral id "
                            f"{reply.data['referral_id']!r}")
    return _result("reply-key", "every reply's record key is its referral id", failures)


def check_reply_referral(obs: Observation) -> CheckResult:
    operator = obs.settings.operator
    routed = obs.routed_referrals
    judged_elsewhere = {obs.referral(UNKNOWN_TYPE), obs.referral(MOVED)}
    failures = []
    for reply in obs.replies:
        ref = reply.referral_id
        if ref in judged_elsewhere:
            continue
        if ref not in routed:
            failures.append(f"{reply.describe()}: about referral {ref!r}, which the kit never routed to {operator}")
        if reply.data is not None and "operator" in reply.data and reply.data["operator"] != operator:
            failures.append(f"{reply.describe()} about {ref}: data.operator is {reply.data['operator']!r}, "
                            f"expected {operator!r}")
    return _result("reply-referral", f"replies are only about referrals routed to {operator} in this run", failures)


SCENARIO_CHECKS: list[Callable[[Observation], CheckResult]] = [
    check_acknowledged, check_answered, check_duplicate_delivery, check_unknown_fields, check_unknown_event_type,
    check_info_provided, check_cancellation, check_reminder, check_personal_data_binding,
]
CHECK_NAMES = ["acknowledged", "answered", "duplicate-delivery", "unknown-fields", "unknown-event-type",
               "info-provided", "cancellation", "reminder", "personal-data-binding",
               "reply-schema", "reply-headers", "reply-key", "reply-referral"]


def evaluate(obs: Observation, contract: Contract) -> list[CheckResult]:
    results = [check(obs) for check in SCENARIO_CHECKS]
    results += [check_reply_schema(obs, contract), check_reply_headers(obs, contract), check_reply_key(obs),
                check_reply_referral(obs)]
    return results
