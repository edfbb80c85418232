"""The dead-letter tool without a broker: ids, replay records, filters, formatting."""

import argparse
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from relais_kit import dlq
from relais_kit.dlq import DeadLetter, DeadLetterId, DlqError
from relais_kit.settings import REPO_ROOT
from relais_kit.topics import load_topics

TOPICS = load_topics(REPO_ROOT / "deploy" / "topics.yaml")
ORIGINAL = [("ce_id", b"evt-1"), ("ce_type", b"fr.franceservices.relais.operator.answered.v1"),
            ("ce_source", b"/operators/caf"), ("content-type", b"application/json")]


def letter(error="schema_violation", *, topic="operator.caf.outbox", offset=0, when="2026-11-20T10:00:00+00:00",
           value=b'{"referral_id": "r-1"}', headers=ORIGINAL, reason="data.outcome is required",
           key=b"r-1") -> DeadLetter:
    dlq_headers = [("dlq_error", error.encode()), ("dlq_reason", reason.encode()),
                   ("dlq_topic", topic.encode()), ("dlq_partition", b"2"), ("dlq_offset", b"41"),
                   ("dlq_consumer", b"referral-operator-replies"), ("dlq_time", when.encode())]
    return DeadLetter(DeadLetterId(f"{topic}.dlq", 2, offset), key, value, (*headers, *dlq_headers),
                      timestamp_ms=1_700_000_000_000)


def test_parse_id_round_trips():
    parsed = dlq.parse_id("operator.france-travail.outbox.dlq:2:17")
    assert parsed == DeadLetterId("operator.france-travail.outbox.dlq", 2, 17)
    assert str(parsed) == "operator.france-travail.outbox.dlq:2:17"


@pytest.mark.parametrize("text", ["referrals.dlq:0", "referrals:0:1", "referrals.dlq:x:1", "referrals.dlq:0:-1",
                                  ":0:1", ""])
def test_parse_id_refuses_what_is_not_a_dead_letter_id(text):
    with pytest.raises(DlqError):
        dlq.parse_id(text)


def test_replay_is_the_original_record_without_dlq_headers_plus_where_it_came_from():
    d = letter()
    at = datetime(2026, 11, 21, 8, 30, tzinfo=UTC)
    replay = dlq.to_replay(d, known_topics=TOPICS.names(), replayed_at=at)
    assert replay.topic == "operator.caf.outbox"
    assert replay.key == b"r-1" and replay.value == d.value
    assert replay.headers == [*ORIGINAL, ("dlq_replayed_from", b"operator.caf.outbox.dlq:2:0"),
                              ("dlq_replayed_at", b"2026-11-21T08:30:00+00:00")]


def test_replaying_a_replayed_dead_letter_keeps_only_the_new_replay_headers():
    again = letter(headers=[*ORIGINAL, ("dlq_replayed_from", b"operator.caf.outbox.dlq:0:3"),
                            ("dlq_replayed_at", b"2026-11-20T09:00:00+00:00")])
    names = [k for k, _ in dlq.to_replay(again).headers]
    assert names.count("dlq_replayed_from") == 1
    assert dict(dlq.to_replay(again).headers)["dlq_replayed_from"] == b"operator.caf.outbox.dlq:2:0"


def test_replay_refuses_without_a_source_or_onto_an_unknown_or_dlq_topic():
    bare = DeadLetter(DeadLetterId("referrals.dlq", 0, 0), None, b"x", ())
    with pytest.raises(DlqError, match="no dlq_topic"):
        dlq.to_replay(bare)
    with pytest.raises(DlqError, match=r"not in deploy/topics\.yaml"):
        dlq.to_replay(letter(topic="somewhere.else"), known_topics=TOPICS.names())
    with pytest.raises(DlqError, match="itself a dead-letter topic"):
        dlq.to_replay(letter(topic="referrals.dlq"))


def test_replay_goes_back_to_the_dead_letter_topics_own_source_never_where_a_header_says():
    # A record forged on operator.caf.inbox.dlq (operators may write there) claiming to
    # come from `referrals`: replaying it would have put it on the lifecycle log.
    forged = DeadLetter(DeadLetterId("operator.caf.inbox.dlq", 0, 0), b"r-1", b"{}",
                        (*ORIGINAL, ("dlq_topic", b"referrals"), ("dlq_error", b"x")))
    with pytest.raises(DlqError, match=r"can only go back to 'operator\.caf\.inbox'"):
        dlq.to_replay(forged, known_topics=TOPICS.names())
    honest = DeadLetter(DeadLetterId("operator.caf.inbox.dlq", 0, 1), b"r-1", b"{}",
                        (*ORIGINAL, ("dlq_topic", b"operator.caf.inbox"), ("dlq_error", b"x")))
    assert dlq.to_replay(honest, known_topics=TOPICS.names()).topic == "operator.caf.inbox"


def test_select_filters_by_error_and_since_and_limit_keeps_the_most_recent():
    a = letter("invalid_json", offset=0, when="2026-11-20T10:00:00+00:00")
    b = letter("schema_violation", offset=1, when="2026-11-20T11:00:00+01:00")  # 10:00 UTC, after a by id
    c = letter("schema_violation", offset=2, when="2026-11-21T09:00:00+00:00")
    assert dlq.select([c, b, a]) == [a, b, c]
    assert dlq.select([a, b, c], error="schema_violation") == [b, c]
    assert dlq.select([a, b, c], since=datetime(2026, 11, 21)) == [c]  # naive means UTC
    assert dlq.select([a, b, c], limit=2) == [b, c]
    assert dlq.select([a, b, c], limit=5) == [a, b, c]
    assert dlq.select([a, b, c], limit=0) == []


def test_when_falls_back_to_the_record_timestamp():
    d = DeadLetter(DeadLetterId("referrals.dlq", 0, 0), None, None, (("dlq_time", b"garbage"),), 0)
    assert d.when == datetime(1970, 1, 1, tzinfo=UTC)


def test_list_line_has_every_column_on_one_line():
    line = dlq.format_line(letter(reason="bad\tvalue\n" + "x" * 200))
    columns = line.split("\t")
    assert columns[:8] == ["operator.caf.outbox.dlq:2:0", "2026-11-20T10:00:00+00:00", "schema_violation",
                           "referral-operator-replies", "from=operator.caf.outbox:2:41",
                           "type=fr.franceservices.relais.operator.answered.v1", "id=evt-1", "key=r-1"]
    assert "\n" not in line and columns[8].startswith("bad\\tvalue\\n") and len(columns[8]) == dlq.REASON_WIDTH


def test_list_line_without_cloudevents_headers_or_key():
    line = dlq.format_line(letter("invalid_envelope", headers=[], key=None))
    assert "type=-\tid=-\tkey=-" in line


def test_counts_per_error():
    letters = [letter("invalid_json"), letter("schema_violation"), letter("schema_violation")]
    assert dlq.format_counts(3, letters) == ["3 dead letter(s)", "  schema_violation: 2", "  invalid_json: 1"]
    assert dlq.format_counts(1, letters)[0] == "3 dead letter(s), 1 shown"


def test_show_pretty_prints_json_and_escapes_binary_without_crashing():
    shown = dlq.format_show(letter(value=json.dumps({"referral_id": "r-1", "city": "Agen"}).encode()))
    assert '  "city": "Agen"' in shown and "dlq_reason: data.outcome is required" in shown
    assert "key: r-1" in shown
    binary = dlq.format_show(letter(value=b"\xff\x00{not json", key=b"\xfe",
                                    headers=[("ce_id", b"\xc3\x28")]))
    assert "(not JSON) \\xff\\x00{not json" in binary
    assert "key: \\xfe" in binary and "ce_id: \\xc3(" in binary
    assert dlq.render_value(None) == "(no value)"
    assert dlq.render_value(b"[1, 2]") == "[\n  1,\n  2\n]"


def test_dlq_topics_are_every_dlq_of_the_file_or_the_requested_ones_checked():
    every = dlq.dlq_topics(TOPICS, None)
    assert "referrals.dlq" in every and "operator.caf.outbox.dlq" in every
    assert all(t.endswith(".dlq") for t in every)
    assert dlq.dlq_topics(TOPICS, ["referrals.dlq"]) == ["referrals.dlq"]
    with pytest.raises(DlqError):
        dlq.dlq_topics(TOPICS, ["referrals"])
    assert "referrals" in dlq.source_topics(TOPICS) and "referrals.dlq" not in dlq.source_topics(TOPICS)


def test_several_replays_need_yes_or_a_terminal():
    assert dlq.replay_allowed(1, yes=False, interactive=False)
    assert not dlq.replay_allowed(2, yes=False, interactive=False)
    assert dlq.replay_allowed(2, yes=True, interactive=False)
    assert dlq.replay_allowed(2, yes=False, interactive=True)


def test_since_must_be_iso():
    assert dlq.parse_since("2026-11-20T10:00:00+01:00") == datetime(2026, 11, 20, 9, tzinfo=UTC)
    with pytest.raises(argparse.ArgumentTypeError):
        dlq.parse_since("yesterday")


def test_help_mentions_personal_data_and_redelivery(capsys):
    with pytest.raises(SystemExit):
        dlq.parser().parse_args(["show", "--help"])
    assert "personal data" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        dlq.parser().parse_args(["replay", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "dead-lettered again" in out and "--dry-run" in out and "--yes" in out


class _InclusiveEndBroker:
    """A consumer over one partition whose broker reports the last record's offset as
    the end (as the embedded tansu does), not the next one."""

    def __init__(self, tp: Any, count: int) -> None:
        from types import SimpleNamespace

        self.tp = tp
        self.records = [SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=o, key=b"k",
                                        value=b"v", headers=[], timestamp=0) for o in range(count)]
        self._position = 0

    async def position(self, tp: Any) -> int:
        return self._position

    async def getmany(self, *tps: Any, timeout_ms: int = 0) -> dict[Any, list[Any]]:
        batch = self.records[self._position:self._position + 1]  # one record per fetch
        self._position += len(batch)
        return {self.tp: batch} if batch else {}


async def test_the_newest_dead_letter_is_listed_when_the_broker_reports_an_inclusive_end() -> None:
    from aiokafka import TopicPartition

    from relais_kit.dlq import _read_until

    tp = TopicPartition("operator.caf.outbox.dlq", 1)
    broker = _InclusiveEndBroker(tp, 2)
    letters = await _read_until(broker, {tp: 1})  # type: ignore[arg-type]  # end 1 for offsets 0 and 1
    assert [letter.id.offset for letter in letters] == [0, 1]


async def test_an_empty_partition_is_read_at_once() -> None:
    from aiokafka import TopicPartition

    from relais_kit.dlq import _read_until

    tp = TopicPartition("referrals.dlq", 0)
    assert await _read_until(_InclusiveEndBroker(tp, 0), {tp: 0}) == []  # type: ignore[arg-type]
