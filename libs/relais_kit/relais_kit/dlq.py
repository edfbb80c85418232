"""Dead letters: list, show and replay the records of the `<topic>.dlq` topics.

A consumer dead-letters a record it can never handle: the original record, untouched,
goes to `<topic>.dlq` with headers dlq_error, dlq_reason, dlq_topic, dlq_partition,
dlq_offset, dlq_consumer, dlq_time. A dead letter is named by its own position,
`<topic>.dlq:<partition>:<offset>` (the first column of `list`).

Reading never joins a consumer group: partitions are assigned by hand and read from
their beginning until a fetch past the end seen at start finds nothing more (a broker's
reported end is not trusted to be exclusive), so no group's offsets move.

Replaying re-produces the ORIGINAL record (same key, value and headers, without the
dlq_* headers, plus dlq_replayed_from and dlq_replayed_at) onto its source topic — the
dead-letter topic's twin, `X` for `X.dlq`, whatever a header says — with acks=all.
Consumers drop a ce_id they have already handled, so replaying an event that was
handled is harmless; a record that is still invalid is simply dead-lettered again.

Values may contain personal data (operator inbox events carry the citizen's name,
birth date, contact): this tool is for operations staff with access to the DLQ topics;
do not paste its output into tickets or chats."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from relais_kit import kafka
from relais_kit.settings import PlatformSettings
from relais_kit.topics import TopicsFile, load_topics

DLQ_SUFFIX = ".dlq"
DLQ_PREFIX = "dlq_"
REASON_WIDTH = 80
READ_TIMEOUT_S = 60.0
# How long a partition read up to its reported end is polled once more for what follows.
DRAIN_WAIT_MS = 300

Headers = list[tuple[str, bytes]]


class DlqError(Exception):
    """A mistake of the operator (bad id, unknown topic, record not found…): printed,
    exit code 2."""


# --------------------------------------------------------------------------- pure part

@dataclass(frozen=True, order=True)
class DeadLetterId:
    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


def parse_id(text: str) -> DeadLetterId:
    """`referrals.dlq:0:12` → DeadLetterId("referrals.dlq", 0, 12)."""
    parts = text.strip().rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise DlqError(f"{text!r} is not a dead-letter id <topic>.dlq:<partition>:<offset>")
    topic, partition, offset = parts
    if not topic.endswith(DLQ_SUFFIX):
        raise DlqError(f"{text!r}: {topic!r} is not a dead-letter topic (it must end with {DLQ_SUFFIX})")
    try:
        p, o = int(partition), int(offset)
    except ValueError as exc:
        raise DlqError(f"{text!r}: partition and offset must be numbers") from exc
    if p < 0 or o < 0:
        raise DlqError(f"{text!r}: partition and offset cannot be negative")
    return DeadLetterId(topic, p, o)


def text_of(raw: bytes | None) -> str:
    """Bytes as printable text: UTF-8 when it is, escaped otherwise; control characters
    (tabs, newlines) escaped so one dead letter stays on one line."""
    if raw is None:
        return ""
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return str(raw)[2:-1]  # b'...' without the b'' → escaped bytes
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in decoded)


@dataclass(frozen=True)
class DeadLetter:
    """One record of a `.dlq` topic."""

    id: DeadLetterId
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None = None

    def header(self, name: str) -> str | None:
        for k, v in reversed(self.headers):  # the consumer appends: the last one is its own
            if k == name:
                return v.decode("utf-8", errors="replace") if v is not None else ""
        return None

    @property
    def error(self) -> str:
        return self.header("dlq_error") or "?"

    @property
    def reason(self) -> str:
        return self.header("dlq_reason") or ""

    @property
    def source_topic(self) -> str | None:
        return self.header("dlq_topic")

    @property
    def source(self) -> str:
        return f"{self.source_topic or '?'}:{self.header('dlq_partition') or '?'}:{self.header('dlq_offset') or '?'}"

    @property
    def when(self) -> datetime | None:
        """dlq_time, else the record's timestamp; always timezone-aware."""
        raw = self.header("dlq_time")
        if raw:
            try:
                return aware(datetime.fromisoformat(raw))
            except ValueError:
                pass
        if self.timestamp_ms is not None:
            return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)
        return None

    def original_headers(self) -> Headers:
        return [(k, v) for k, v in self.headers if not k.startswith(DLQ_PREFIX)]


@dataclass(frozen=True)
class ReplayRecord:
    """What replaying a dead letter produces."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    replayed_from: DeadLetterId


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_since(text: str) -> datetime:
    try:
        return aware(datetime.fromisoformat(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or time") from exc


def to_replay(letter: DeadLetter, *, known_topics: Iterable[str] | None = None,
              replayed_at: datetime | None = None) -> ReplayRecord:
    """The original record, back onto its source topic: same key and value, the
    original headers without the dlq_* ones, plus where and when it was replayed from.

    The source is the dead-letter topic's own twin (`X.dlq` → `X`), never what a header
    says: whoever may write a dead-letter topic (an operator may write its inbox's)
    could otherwise send a forged record anywhere by replay. A `dlq_topic` header that
    names another topic marks a forged or misplaced record: refused."""
    source = letter.id.topic.removesuffix(DLQ_SUFFIX)
    claimed = letter.source_topic
    if not claimed:
        raise DlqError(f"{letter.id}: no dlq_topic header: not dead-lettered by a Relais consumer")
    if claimed != source:
        raise DlqError(f"{letter.id}: its dlq_topic header names {claimed!r}, but a dead letter of "
                       f"{letter.id.topic} can only go back to {source!r}: refused (forged or misplaced)")
    if source.endswith(DLQ_SUFFIX):
        raise DlqError(f"{letter.id}: its source {source!r} is itself a dead-letter topic")
    if known_topics is not None and source not in set(known_topics):
        raise DlqError(f"{letter.id}: its source topic {source!r} is not in deploy/topics.yaml")
    moment = aware(replayed_at or datetime.now(UTC))
    headers = [*letter.original_headers(),
               ("dlq_replayed_from", str(letter.id).encode()),
               ("dlq_replayed_at", moment.isoformat().encode())]
    return ReplayRecord(source, letter.key, letter.value, headers, letter.id)


def matches(letter: DeadLetter, *, error: str | None = None, since: datetime | None = None) -> bool:
    if error is not None and letter.error != error:
        return False
    if since is not None:
        when = letter.when
        if when is None or when < aware(since):
            return False
    return True


def select(letters: Iterable[DeadLetter], *, error: str | None = None, since: datetime | None = None,
           limit: int | None = None) -> list[DeadLetter]:
    """Matching dead letters, oldest first; with a limit, the `limit` most recent."""
    oldest = datetime.min.replace(tzinfo=UTC)
    chosen = sorted((d for d in letters if matches(d, error=error, since=since)),
                    key=lambda d: (d.when or oldest, d.id))
    if limit is None:
        return chosen
    return chosen[max(0, len(chosen) - limit):] if limit else []


def truncate(text: str, width: int = REASON_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_line(letter: DeadLetter) -> str:
    """One tab-separated line: id, time, error, consumer, source, ce_type, ce_id, key, reason."""
    when = letter.when
    columns = [
        str(letter.id),
        when.isoformat() if when else "-",
        letter.error,
        letter.header("dlq_consumer") or "-",
        f"from={letter.source}",
        f"type={letter.header('ce_type') or '-'}",
        f"id={letter.header('ce_id') or '-'}",
        f"key={text_of(letter.key) if letter.key is not None else '-'}",
        truncate(text_of(letter.reason.encode())),
    ]
    return "\t".join(columns)


def format_counts(shown: int, letters: Sequence[DeadLetter]) -> list[str]:
    counts = Counter(d.error for d in letters)
    lines = [f"{len(letters)} dead letter(s)" + (f", {shown} shown" if shown != len(letters) else "")]
    lines += [f"  {error}: {n}" for error, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return lines


def render_value(value: bytes | None) -> str:
    """Pretty JSON when the value is JSON, else the bytes escaped; never raises."""
    if value is None:
        return "(no value)"
    try:
        return json.dumps(json.loads(value.decode("utf-8")), indent=2, ensure_ascii=False)
    except (UnicodeDecodeError, ValueError):
        return "(not JSON) " + str(value)[2:-1]


def format_show(letter: DeadLetter) -> str:
    lines = [f"dead letter {letter.id}"]
    if letter.timestamp_ms is not None:
        lines.append(f"record timestamp: {datetime.fromtimestamp(letter.timestamp_ms / 1000, UTC).isoformat()}")
    lines.append(f"key: {text_of(letter.key) if letter.key is not None else '(none)'}")
    lines.append("headers:")
    lines += [f"  {text_of(k.encode())}: {text_of(v)}" for k, v in letter.headers]
    lines.append("value:")
    lines.append(render_value(letter.value))
    return "\n".join(lines)


def dlq_topics(topics: TopicsFile, requested: Sequence[str] | None) -> list[str]:
    """The dead-letter topics to read: the requested ones (checked), else all."""
    every = [n for n in topics.names() if n.endswith(DLQ_SUFFIX)]
    if not requested:
        return every
    unknown = [t for t in requested if t not in every]
    if unknown:
        raise DlqError(f"not dead-letter topics of deploy/topics.yaml: {', '.join(unknown)}")
    return list(dict.fromkeys(requested))


def source_topics(topics: TopicsFile) -> list[str]:
    return [n for n in topics.names() if not n.endswith(DLQ_SUFFIX)]


def replay_allowed(count: int, *, yes: bool, interactive: bool) -> bool:
    """More than one record needs --yes, or a yes at a terminal."""
    return count <= 1 or yes or interactive


# --------------------------------------------------------------------------- broker part

def _reader(bootstrap: str) -> AIOKafkaConsumer:
    # group_id=None: no group, no commits; partitions are assigned by hand.
    return kafka.consumer(bootstrap, None)


def _letter(record: object) -> DeadLetter:
    return DeadLetter(
        id=DeadLetterId(record.topic, record.partition, record.offset),  # type: ignore[attr-defined]
        key=record.key,  # type: ignore[attr-defined]
        value=record.value,  # type: ignore[attr-defined]
        headers=tuple(record.headers or ()),  # type: ignore[attr-defined]
        timestamp_ms=record.timestamp,  # type: ignore[attr-defined]
    )


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise DlqError(f"topic {topic!r} does not exist on the broker")
    return [TopicPartition(topic, p) for p in sorted(partitions)]


async def _read_until(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> list[DeadLetter]:
    """Reads the assigned partitions until each has passed its end offset *and* a fetch
    found nothing more. The end a broker reports is not trusted to be exclusive: the
    embedded one reports the last record's offset (1 for records at 0 and 1), and a tool
    ops rely on must never miss the newest dead letter. What arrived meanwhile is
    listed too."""
    letters: list[DeadLetter] = []
    pending = set(ends)
    deadline = time.monotonic() + READ_TIMEOUT_S
    while pending:
        if time.monotonic() > deadline:
            raise DlqError(f"timed out reading {', '.join(sorted(f'{t.topic}:{t.partition}' for t in pending))}")
        reached = {tp for tp in pending if await consumer.position(tp) >= ends[tp]}
        batches = await consumer.getmany(*pending, timeout_ms=DRAIN_WAIT_MS if reached == pending else 500)
        letters += [_letter(r) for records in batches.values() for r in records]
        pending -= {tp for tp in reached if not batches.get(tp)}
    return letters


async def read_dead_letters(bootstrap: str, topics: Sequence[str]) -> list[DeadLetter]:
    """Every record of the given topics, from the beginning to past the end seen at start."""
    consumer = _reader(bootstrap)
    await consumer.start()
    try:
        partitions = [tp for topic in topics for tp in await _partitions(consumer, topic)]
        if not partitions:
            return []
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        return await _read_until(consumer, ends)
    finally:
        await consumer.stop()


async def fetch_dead_letter(bootstrap: str, letter_id: DeadLetterId) -> DeadLetter:
    """The one record at `letter_id`."""
    consumer = _reader(bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(letter_id.topic, letter_id.partition)
        if tp not in await _partitions(consumer, letter_id.topic):
            raise DlqError(f"{letter_id}: topic {letter_id.topic!r} has no partition {letter_id.partition}")
        consumer.assign([tp])
        start = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if not start <= letter_id.offset < end:
            raise DlqError(f"{letter_id}: no such dead letter (partition holds offsets {start}..{end - 1})")
        consumer.seek(tp, letter_id.offset)
        for letter in await _read_until(consumer, {tp: letter_id.offset + 1}):
            if letter.id == letter_id:
                return letter
        raise DlqError(f"{letter_id}: no such dead letter (compacted or a transaction marker)")
    finally:
        await consumer.stop()


async def produce_replays(bootstrap: str, replays: Sequence[ReplayRecord]) -> list[str]:
    """Produces each replay with acks=all, in order; returns where each landed."""
    producer = kafka.producer(bootstrap)
    await producer.start()
    try:
        landed = []
        for r in replays:
            meta = await producer.send_and_wait(r.topic, value=r.value, key=r.key, headers=r.headers)
            landed.append(f"{meta.topic}:{meta.partition}:{meta.offset}")
        return landed
    finally:
        await producer.stop()


# --------------------------------------------------------------------------- commands

async def cmd_list(args: argparse.Namespace, bootstrap: str, topics: TopicsFile) -> int:
    letters = await read_dead_letters(bootstrap, dlq_topics(topics, args.topic))
    matching = select(letters, error=args.error, since=args.since)
    shown = select(matching, limit=args.limit)
    for letter in shown:
        print(format_line(letter))
    for line in format_counts(len(shown), matching):
        print(line)
    return 0


async def cmd_show(args: argparse.Namespace, bootstrap: str, topics: TopicsFile) -> int:
    letter_id = parse_id(args.id)
    dlq_topics(topics, [letter_id.topic])
    print(format_show(await fetch_dead_letter(bootstrap, letter_id)))
    return 0


async def _to_replay(args: argparse.Namespace, bootstrap: str, topics: TopicsFile) -> list[DeadLetter]:
    if args.ids and args.topic:
        raise DlqError("give dead-letter ids or --topic, not both")
    if args.ids:
        if args.error or args.since:
            raise DlqError("--error and --since go with --topic, not with ids")
        ids = list(dict.fromkeys(parse_id(i) for i in args.ids))
        dlq_topics(topics, [i.topic for i in ids])
        return [await fetch_dead_letter(bootstrap, i) for i in ids]
    if not args.topic:
        raise DlqError("give dead-letter ids, or --topic T.dlq (optionally with --error)")
    letters = await read_dead_letters(bootstrap, dlq_topics(topics, args.topic))
    return select(letters, error=args.error, since=args.since)


def _confirm(count: int) -> bool:
    answer = input(f"replay {count} records onto their source topics? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


async def cmd_replay(args: argparse.Namespace, bootstrap: str, topics: TopicsFile) -> int:
    letters = await _to_replay(args, bootstrap, topics)
    known = source_topics(topics)
    replays = [to_replay(d, known_topics=known) for d in letters]
    if not replays:
        print("nothing to replay")
        return 0
    if args.dry_run:
        for r in replays:
            print(f"would replay {r.replayed_from} -> {r.topic} key={text_of(r.key) if r.key is not None else '-'}")
        print(f"{len(replays)} record(s) would be replayed (dry run: nothing produced)")
        return 0
    interactive = sys.stdin.isatty()
    if not replay_allowed(len(replays), yes=args.yes, interactive=interactive):
        raise DlqError(f"{len(replays)} records to replay and stdin is not a terminal: "
                       "add --yes (or --dry-run to see them first)")
    if len(replays) > 1 and not args.yes and not _confirm(len(replays)):
        print("nothing replayed")
        return 1
    for r, landed in zip(replays, await produce_replays(bootstrap, replays), strict=True):
        print(f"replayed {r.replayed_from} -> {landed}")
    print(f"{len(replays)} record(s) replayed")
    return 0


COMMANDS = {"list": cmd_list, "show": cmd_show, "replay": cmd_replay}


def _positive(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return n


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m relais_kit.dlq", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The broker is KAFKA_BOOTSTRAP_SERVERS; the topics come from deploy/topics.yaml "
               "(RELAIS_TOPICS_FILE). Exit codes: 0 done, 1 nothing replayed (declined), 2 usage error.")
    sub = top.add_subparsers(dest="command", required=True, metavar="{list,show,replay}")

    ls = sub.add_parser(
        "list", help="one line per dead letter, and a count per error",
        description="One tab-separated line per dead letter: id (<topic>.dlq:<partition>:<offset>), "
                    "dlq_time, dlq_error, dlq_consumer, from=<source topic:partition:offset>, "
                    "type=<ce_type>, id=<ce_id>, key=<key>, reason (truncated). Then a count per error. "
                    "Reads every partition from its beginning to its end at start, without a consumer "
                    "group: no offsets move.")
    ls.add_argument("--topic", action="append", metavar="T.dlq",
                    help="a dead-letter topic to read (repeatable); default: every *.dlq topic")
    ls.add_argument("--error", metavar="CODE", help="only this dlq_error (invalid_json, schema_violation, …)")
    ls.add_argument("--since", type=parse_since, metavar="ISO",
                    help="only dead-lettered at or after this time (ISO 8601; UTC when no offset)")
    ls.add_argument("--limit", type=_positive, metavar="N", help="print only the N most recent")

    show = sub.add_parser(
        "show", help="every header, the key and the value of one dead letter",
        description="Every header, the key, and the value (pretty JSON, else escaped bytes) of one "
                    "dead letter. Values may contain personal data (operator inbox events carry the "
                    "citizen's identity and contact): for operations staff with access to the DLQ topics.")
    show.add_argument("id", metavar="ID", help="<topic>.dlq:<partition>:<offset>, as printed by list")

    replay = sub.add_parser(
        "replay", help="re-produce original records onto their source topics",
        description="Re-produces each dead letter's ORIGINAL record onto its source topic (dlq_topic "
                    "header): same key, same value, the original headers without the dlq_* ones, plus "
                    "dlq_replayed_from (the dead letter's id) and dlq_replayed_at; acks=all. Consumers "
                    "are idempotent on ce_id, so replaying an event already handled is harmless; a record "
                    "that is still invalid is simply dead-lettered again. The dead letter itself stays.",
        epilog="Safety: more than one record needs --yes, or a 'y' at a terminal; "
               "without a terminal (a pipe, a script) it is refused.")
    replay.add_argument("ids", nargs="*", metavar="ID", help="<topic>.dlq:<partition>:<offset> (one or more)")
    replay.add_argument("--topic", action="append", metavar="T.dlq",
                        help="replay every dead letter of this topic (repeatable) instead of ids")
    replay.add_argument("--error", metavar="CODE", help="with --topic: only this dlq_error")
    replay.add_argument("--since", type=parse_since, metavar="ISO", help="with --topic: only since this time")
    replay.add_argument("--dry-run", action="store_true", help="print what would be replayed; produce nothing")
    replay.add_argument("--yes", action="store_true", help="replay several records without asking")
    return top


async def amain(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = PlatformSettings()
    try:
        topics = load_topics(settings.topics_file)
        return await COMMANDS[args.command](args, settings.kafka_bootstrap_servers, topics)
    except DlqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return asyncio.run(amain(argv))
    except kafka.KafkaSettingsError as exc:
        print(f"relais_kit.dlq: {exc}", file=sys.stderr)
        return 2
    except KafkaConnectionError as exc:
        bootstrap = PlatformSettings().kafka_bootstrap_servers
        print(f"relais_kit.dlq: {kafka.unreachable(bootstrap, exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
