#!/usr/bin/env node
// An operator's consumer for Relais, written with kafkajs (pure JavaScript, no build step).
//
// It reads `operator.<code>.inbox`, checks every event against the JSON Schemas of the
// contract (the `schemas/` folder Relais publishes), decrypts the personal data (JWE,
// ECDH-ES + A256GCM) with the operator's private key, and answers each routed referral
// with `operator.acknowledged` then `operator.answered` on `operator.<code>.outbox`.
//
// A `referral.routed` delivered again after we answered it is a request: the platform lost
// our replies (with its broker) and asks for them again. We send the very replies we sent
// about that referral again, with the same `ce_id`s; any other repeated event is skipped.
//
// It depends on nothing but the contract: the `schemas/` folder, CloudEvents 1.0 in
// Kafka binary mode, the topic names and the operator's key pair. Copy it, then replace
// `answerReferral()` and `answerAfterInfo()` with your own case handling.
//
//     node operator-consumer.mjs --operator caf --schemas /path/to/schemas \
//         --private-key /path/to/caf.private.jwk.json
//
// Environment: KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092) and the security settings
// every Relais client reads (see securityConfig): KAFKA_SECURITY_PROTOCOL,
// KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CA_FILE...

import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";

import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { compactDecrypt, importJWK } from "jose";
import { Kafka, logLevel as KafkaLogLevel, Partitioners } from "kafkajs";

// --- Logging: one plain line per event, never citizen data ---------------------------

const LEVELS = { DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40 };
let minLevel = LEVELS.INFO;

/**
 * Writes one log line to stderr.
 * @param {keyof LEVELS} level
 * @param {string} message
 */
function log(level, message) {
  if (LEVELS[level] >= minLevel) {
    process.stderr.write(`${new Date().toISOString()} ${level} operator-consumer ${message}\n`);
  }
}

// --- The contract --------------------------------------------------------------------

// Every CloudEvents type is `fr.franceservices.<name>.v<major>`; the data of `<name>` v1
// is described by `schemas/events/<name>.v1.json`.
const TYPE_RE = /^fr\.franceservices\.(?<name>[a-z_.]+)\.v(?<major>[0-9]+)$/;

// What the platform may write to an operator's inbox (this consumer knows v1).
const INBOX_EVENTS = ["referral.routed", "referral.info_provided", "referral.cancelled", "referral.reminder"];
// Inbox events whose `personal_data` is a JWE for us; its plaintext is described by
// `schemas/personal/<name>.v1.json`.
const ENCRYPTED_EVENTS = ["referral.routed", "referral.info_provided"];
// What this consumer writes to its outbox.
const OUTBOX_EVENTS = ["operator.acknowledged", "operator.answered"];

// Headers every event must carry (CloudEvents binary mode: attributes are `ce_*` headers).
const REQUIRED_HEADERS = ["ce_specversion", "ce_id", "ce_source", "ce_type", "content-type"];
// Optional W3C Trace Context headers. Copied from the inbox record into our replies, they
// let Relais show a referral's whole journey, our answer included, as one trace (an
// OpenTelemetry-instrumented client would instead send its own span's context).
const TRACE_HEADERS = ["traceparent", "tracestate"];

/**
 * `operator.answered` -> `fr.franceservices.operator.answered.v1`.
 * @param {string} name
 */
const eventType = (name) => `fr.franceservices.${name}.v1`;

/**
 * A copy of `schema` without `additionalProperties: false`.
 *
 * The contract promises that inside v1 the events only grow: the platform may add new
 * optional fields before you update your copy of `schemas/`. A tolerant reader checks
 * every field it knows and ignores the others, so we relax closed objects for what we
 * READ. What we WRITE is checked against the schemas unchanged.
 * @param {unknown} schema
 * @returns {unknown}
 */
function tolerant(schema) {
  if (Array.isArray(schema)) return schema.map(tolerant);
  if (schema !== null && typeof schema === "object") {
    return Object.fromEntries(
      Object.entries(schema)
        .filter(([key, value]) => !(key === "additionalProperties" && value === false))
        .map(([key, value]) => [key, tolerant(value)]),
    );
  }
  return schema;
}

/**
 * @typedef {import("ajv").ValidateFunction} ValidateFunction
 * @typedef {Record<string, any>} Data
 */

/** The schemas this consumer needs, loaded once from the `schemas/` folder. */
class Contract {
  /** @param {string} schemasDir */
  constructor(schemasDir) {
    // Two validator sets: a schema's `$id` can be registered once per Ajv instance.
    const newAjv = () => {
      const ajv = new Ajv2020({ allErrors: true, strict: false });
      addFormats(ajv); // `uuid`, `date-time`, `date`, `email`, ...
      return ajv;
    };
    const readAjv = newAjv();
    const writeAjv = newAjv();
    /** @type {Record<string, Data>} */
    this.schemas = {};
    /** @type {Record<string, ValidateFunction>} tolerant, for the inbox */
    this.readers = {};
    /** @type {Record<string, ValidateFunction>} exact, for the outbox */
    this.writers = {};
    /** @type {Record<string, ValidateFunction>} tolerant, for decrypted personal data */
    this.personal = {};
    const load = (/** @type {string} */ path) => JSON.parse(readFileSync(path, "utf-8"));
    for (const name of [...INBOX_EVENTS, ...OUTBOX_EVENTS]) {
      const schema = load(join(schemasDir, "events", `${name}.v1.json`));
      this.schemas[name] = schema;
      if (INBOX_EVENTS.includes(name)) this.readers[name] = readAjv.compile(tolerant(schema));
      else this.writers[name] = writeAjv.compile(schema);
    }
    for (const name of ENCRYPTED_EVENTS) {
      const path = join(schemasDir, "personal", `${name}.v1.json`);
      if (existsSync(path)) {
        this.personal[name] = readAjv.compile(tolerant(load(path)));
      } else {
        log("WARNING", `${path} not found: the decrypted personal data of ${name} is not schema-checked`);
      }
    }
    /** The operator codes, as the contract lists them. @type {string[]} */
    this.operators = this.schemas["referral.routed"].$defs.operator.enum;
  }

  /**
   * Where and why the last validation failed, WITHOUT the offending values: the value
   * may be a citizen's name or e-mail.
   * @param {ValidateFunction} validate
   * @param {unknown} data
   * @returns {string[]}
   */
  static problems(validate, data) {
    if (validate(data)) return [];
    const found = (validate.errors ?? []).map((e) => {
      // Field NAMES from the schema are safe to log; values are not.
      const field = e.params?.missingProperty ?? e.params?.additionalProperty;
      return `${e.instancePath || "(root)"}: ${e.keyword}${field ? ` ${field}` : ""}`;
    });
    return [...new Set(found)].sort();
  }

  /**
   * Top-level fields that our copy of the schema does not describe.
   * @param {string} name
   * @param {Data} data
   */
  unknownFields(name, data) {
    const known = Object.keys(this.schemas[name].properties ?? {});
    return Object.keys(data).filter((k) => !known.includes(k)).sort();
  }
}

// --- Reading and writing CloudEvents (Kafka binary content mode) ---------------------

/** A record we cannot or need not handle; it is logged and its offset committed. */
class Skip extends Error {
  /** @param {string} message @param {string} [ceId] the record's ce_id, when it has one */
  constructor(message, ceId) {
    super(message);
    this.ceId = ceId;
  }
}

/**
 * Returns the CloudEvents attributes (header name -> text) and the JSON data.
 * @param {import("kafkajs").KafkaMessage} message
 * @returns {{attrs: Record<string, string>, data: Data}}
 */
function readEvent(message) {
  /** @type {Record<string, string>} */
  const attrs = {};
  const decoder = new TextDecoder("utf-8", { fatal: true });
  for (const [header, raw] of Object.entries(message.headers ?? {})) {
    // kafkajs gives a Buffer, or an array of Buffers when a header name repeats.
    const first = Array.isArray(raw) ? raw[0] : raw;
    try {
      attrs[header.toLowerCase()] = first === undefined || first === null ? "" : decoder.decode(first);
    } catch {
      throw new Skip(`header ${header} is not UTF-8`);
    }
  }
  const ceId = attrs.ce_id || undefined;
  const missing = REQUIRED_HEADERS.filter((h) => !attrs[h]);
  if (missing.length) throw new Skip(`not a CloudEvent, missing header(s) ${missing.join(", ")}`, ceId);
  if (attrs.ce_specversion !== "1.0") {
    throw new Skip(`ce_specversion ${JSON.stringify(attrs.ce_specversion)} is not 1.0`, ceId);
  }
  if (attrs["content-type"].split(";")[0].trim() !== "application/json") {
    throw new Skip(`content-type ${JSON.stringify(attrs["content-type"])} is not application/json`, ceId);
  }
  let data;
  try {
    data = JSON.parse(decoder.decode(message.value ?? Buffer.alloc(0)));
  } catch {
    throw new Skip("record value is not UTF-8 JSON", ceId);
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new Skip("record value is not a JSON object", ceId);
  }
  return { attrs, data };
}

const nowRfc3339 = () => new Date().toISOString(); // e.g. 2025-03-14T09:02:45.123Z

// RFC 4122 name-based UUID (version 5, SHA-1) in the URL namespace, as Python's
// `uuid.uuid5(uuid.NAMESPACE_URL, name)` computes it.
const NAMESPACE_URL = Buffer.from("6ba7b8119dad11d180b400c04fd430c8", "hex");

/** @param {string} name */
function uuid5(name) {
  const hash = createHash("sha1").update(NAMESPACE_URL).update(name, "utf-8").digest().subarray(0, 16);
  hash[6] = (hash[6] & 0x0f) | 0x50; // version 5
  hash[8] = (hash[8] & 0x3f) | 0x80; // RFC 4122 variant
  const hex = hash.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * A deterministic id: uuid5 over the referral and the event name.
 *
 * If we crash after producing but before committing the offset, the inbox event is
 * delivered again and we answer again. Because the ids are the same, the platform
 * (which de-duplicates by `ce_id`) drops the second copy.
 * @param {string} operator @param {string} referralId @param {string} name
 */
const eventId = (operator, referralId, name) => uuid5(`/operators/${operator}/referrals/${referralId}/${name}`);

/**
 * Key, value and headers of one outbox event (`trace`: the TRACE_HEADERS to pass on).
 * @param {string} operator @param {string} name @param {Data} data @param {Record<string, string>} [trace]
 * @returns {import("kafkajs").Message}
 */
function outboxRecord(operator, name, data, trace = {}) {
  const referralId = data.referral_id;
  return {
    // Record key = the referral id: every event of a referral stays in order on one partition.
    key: referralId,
    value: JSON.stringify(data),
    headers: {
      ce_specversion: "1.0",
      ce_id: eventId(operator, referralId, name),
      ce_source: `/operators/${operator}`,
      ce_type: eventType(name),
      ce_time: nowRfc3339(),
      ce_subject: referralId,
      "content-type": "application/json",
      ...trace,
    },
  };
}

// --- Personal data: JWE compact, ECDH-ES + A256GCM, for our key only ------------------

/**
 * Decrypts `personal_data` and returns the plaintext JSON object. Throws Skip on any
 * failure (wrong key, tampered token, not JSON, not for this referral).
 * @param {CryptoKey} key @param {Contract} contract @param {string} name @param {Data} data
 * @returns {Promise<Data>}
 */
async function decryptPersonalData(key, contract, name, data) {
  if (typeof data.personal_data !== "string") throw new Skip("no personal_data (a JWE) in the event");
  let plaintext;
  try {
    ({ plaintext } = await compactDecrypt(data.personal_data, key, {
      keyManagementAlgorithms: ["ECDH-ES"],
      contentEncryptionAlgorithms: ["A256GCM"],
    }));
  } catch (error) {
    // Typically JWEDecryptionFailed: encrypted for another key, or tampered with.
    throw new Skip(`personal_data cannot be decrypted with our key (${error?.code ?? error?.name ?? "error"})`);
  }
  let personal;
  try {
    personal = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(plaintext));
  } catch {
    throw new Skip("decrypted personal_data is not UTF-8 JSON");
  }
  if (personal === null || typeof personal !== "object" || Array.isArray(personal)) {
    throw new Skip("decrypted personal_data is not a JSON object");
  }
  const validate = contract.personal[name];
  if (validate) {
    const problems = Contract.problems(validate, personal);
    if (problems.length) throw new Skip(`decrypted personal_data is invalid: ${problems.join("; ")}`);
  }
  // A ciphertext copied from another referral must be refused.
  if (personal.referral_id !== data.referral_id) throw new Skip("decrypted personal_data is for another referral");
  return personal;
}

// --- Your business logic -------------------------------------------------------------

/** @param {string} operator @param {string} referralId */
const caseReference = (operator, referralId) => `${operator.toUpperCase()}-${referralId.slice(0, 8).toUpperCase()}`;

/**
 * What we send back for a routed referral: here, a fixed acknowledgement and a
 * `resolved` answer. Replace this with your own case handling (`personal` holds the
 * decrypted summary and citizen details). Never copy citizen data into these messages
 * unless the citizen needs it.
 * @param {string} operator @param {Data} routed @param {Data} _personal
 * @returns {Array<[string, Data]>}
 */
function answerReferral(operator, routed, _personal) {
  const referralId = routed.referral_id;
  const reference = caseReference(operator, referralId);
  const acknowledged = {
    referral_id: referralId,
    acknowledged_at: nowRfc3339(),
    case_reference: reference,
    expert: `Service de traitement des demandes (${operator})`,
  };
  const answered = {
    referral_id: referralId,
    answered_at: nowRfc3339(),
    outcome: "resolved",
    message_to_citizen:
      "Bonjour, votre demande a bien été traitée par nos services. " +
      "Vous n'avez aucune démarche supplémentaire à effectuer.",
    message_to_adviser: `Demande traitée, dossier ${reference}. Aucune action de votre part n'est requise.`,
  };
  return [
    ["operator.acknowledged", acknowledged],
    ["operator.answered", answered],
  ];
}

/**
 * What we send back when the adviser provided the information we asked for
 * (`personal.message`): here, a `resolved` answer.
 * @param {string} operator @param {Data} provided @param {Data} _personal
 * @returns {Array<[string, Data]>}
 */
function answerAfterInfo(operator, provided, _personal) {
  const referralId = provided.referral_id;
  const reference = caseReference(operator, referralId);
  return [
    [
      "operator.answered",
      {
        referral_id: referralId,
        answered_at: nowRfc3339(),
        outcome: "resolved",
        message_to_citizen:
          "Bonjour, grâce aux informations complémentaires, votre demande a bien été traitée par nos services.",
        message_to_adviser: `Merci pour ces informations. Demande traitée, dossier ${reference}.`,
      },
    ],
  ];
}

// --- Connecting ----------------------------------------------------------------------

/**
 * kafkajs' `ssl` and `sasl` options from the variables every Relais client reads. On the
 * Relais cluster: KAFKA_SECURITY_PROTOCOL=SASL_SSL, KAFKA_SASL_MECHANISM=SCRAM-SHA-512,
 * KAFKA_SASL_USERNAME=operator-<code> (your own principal: it may read your inbox and
 * write your outbox, nothing else), KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE),
 * KAFKA_SSL_CA_FILE (the CA of the platform's brokers); KAFKA_SSL_CERT_FILE and
 * KAFKA_SSL_KEY_FILE for mutual TLS.
 * @param {Record<string, string | undefined>} env
 */
export function securityConfig(env) {
  const protocol = (env.KAFKA_SECURITY_PROTOCOL || "PLAINTEXT").toUpperCase();
  if (!["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"].includes(protocol)) {
    throw new Error(`KAFKA_SECURITY_PROTOCOL: unknown protocol ${protocol}`);
  }
  /** @type {Record<string, unknown>} */
  const config = {};
  if (protocol.endsWith("SSL")) {
    const ssl = {};
    if (env.KAFKA_SSL_CA_FILE) ssl.ca = [readFileSync(env.KAFKA_SSL_CA_FILE, "utf-8")];
    if (env.KAFKA_SSL_CERT_FILE) ssl.cert = readFileSync(env.KAFKA_SSL_CERT_FILE, "utf-8");
    if (env.KAFKA_SSL_KEY_FILE) ssl.key = readFileSync(env.KAFKA_SSL_KEY_FILE, "utf-8");
    config.ssl = Object.keys(ssl).length ? ssl : true;
  }
  if (protocol.startsWith("SASL_")) {
    let password = env.KAFKA_SASL_PASSWORD;
    if (!password && env.KAFKA_SASL_PASSWORD_FILE) password = readFileSync(env.KAFKA_SASL_PASSWORD_FILE, "utf-8").trim();
    if (!env.KAFKA_SASL_USERNAME || !password) throw new Error(`${protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD`);
    const mechanism = (env.KAFKA_SASL_MECHANISM || "SCRAM-SHA-512").toLowerCase();
    if (!["scram-sha-256", "scram-sha-512"].includes(mechanism)) throw new Error(`KAFKA_SASL_MECHANISM: ${mechanism} is not offered`);
    config.sasl = { mechanism, username: env.KAFKA_SASL_USERNAME, password };
  }
  return config;
}

// --- The consumer --------------------------------------------------------------------

class OperatorConsumer {
  /**
   * @param {{operator: string, bootstrap: string, group: string, contract: Contract, key: CryptoKey}} options
   */
  constructor({ operator, bootstrap, group, contract, key, security = {} }) {
    this.operator = operator;
    this.inbox = `operator.${operator}.inbox`;
    this.outbox = `operator.${operator}.outbox`;
    this.contract = contract;
    this.key = key;
    // Ids of the events already handled. The contract says `ce_id` is the
    // de-duplication key: Kafka delivers at least once, so the same event can come
    // twice (a redelivery after a crash, or the platform re-sending it). This
    // in-memory set only lasts as long as the process: a production consumer stores
    // each handled id in its own database, in the same transaction as the work.
    /** @type {Set<string>} */
    this.seen = new Set();
    /** Referrals the citizen withdrew: we send nothing more for them. @type {Set<string>} */
    this.cancelled = new Set();
    /** Referrals this process already answered. @type {Set<string>} */
    this.answered = new Set();
    // The replies we sent about each referral, exactly as sent (key, value, headers with
    // their ce_id and ce_time), and the referral of each routed event we handled. A
    // `referral.routed` delivered again after we answered it asks for them again: Relais
    // lost them with its broker (docs/broker-loss.md). A production consumer keeps its
    // replies in its own database, next to the case and in the same transaction, and
    // re-sends those stored rows: never a second case, a second letter, nor a reply
    // rebuilt with new ids or a new content.
    /** @type {Map<string, import("kafkajs").Message[]>} referral id -> replies sent */
    this.replies = new Map();
    /** @type {Map<string, string>} ce_id of a routed event handled -> its referral id */
    this.routed = new Map();
    this.handledCount = 0;
    this.lastRecordAt = Date.now();

    const kafka = new Kafka({
      clientId: `relais-operator-${operator}-example-node`,
      brokers: bootstrap.split(",").map((b) => b.trim()),
      logLevel: KafkaLogLevel.WARN,
      // kafkajs' own log lines, on the same stream as ours.
      logCreator: () => ({ namespace, level, log: entry }) => {
        const { message, timestamp: _t, logger: _l, ...extra } = entry;
        const name = level === KafkaLogLevel.ERROR ? "ERROR" : level === KafkaLogLevel.WARN ? "WARNING" : "INFO";
        const detail = extra.error ? ` (${extra.error})` : "";
        log(name, `kafkajs ${namespace}: ${message}${detail}`);
      },
      retry: { retries: 8, initialRetryTime: 200 },
      ...security, // ssl and sasl: see securityConfig
    });
    this.consumer = kafka.consumer({
      groupId: group,
      sessionTimeout: 10000,
      rebalanceTimeout: 10000,
      heartbeatInterval: 1000,
      // The embedded development broker (tansu) holds every fetch for the whole
      // maxWaitTime even when records are there: keep it short.
      maxWaitTimeInMs: 50,
      // Topics are declared by the platform; never let a typo create one.
      allowAutoTopicCreation: false,
    });
    this.producer = kafka.producer({
      allowAutoTopicCreation: false,
      // The Java client's partitioner (murmur2 on the key), as the platform uses.
      createPartitioner: Partitioners.DefaultPartitioner,
      // Set `idempotent: true` on a real Kafka cluster. It is off here because the
      // embedded broker used for development and tests (tansu) does not support
      // idempotent producers (InitProducerId fails), and this example must run on it.
      idempotent: false,
      // Without idempotence, one request in flight keeps `acknowledged` before
      // `answered` even when a send is retried.
      maxInFlightRequests: 1,
    });
  }

  /**
   * Consumes until `stop()` is called.
   * @param {{maxMessages?: number, onLimit: () => void}} options
   */
  async start({ maxMessages, onLimit }) {
    await this.producer.connect();
    await this.consumer.connect();
    this.consumer.on(this.consumer.events.GROUP_JOIN, ({ payload }) => {
      const partitions = payload.memberAssignment[this.inbox] ?? [];
      log("INFO", `assigned ${this.inbox} partition(s) [${[...partitions].sort((a, b) => a - b).join(", ")}]`);
    });
    // A new group starts from the oldest record still kept on the topic.
    await this.consumer.subscribe({ topics: [this.inbox], fromBeginning: true });
    log("INFO", `consuming ${this.inbox}, answering on ${this.outbox}`);
    await this.consumer.run({
      // We commit ourselves, after the work is done: at-least-once delivery.
      autoCommit: false,
      partitionsConsumedConcurrently: 1,
      eachMessage: async ({ topic, partition, message }) => {
        this.lastRecordAt = Date.now();
        // If handle() throws (the answers could not be delivered), the offset is not
        // committed and kafkajs delivers the record again.
        await this.handle(topic, partition, message);
        // Commit only once the work is done (and the answers are on the broker): if we
        // crash before this line the record is delivered again, and the
        // de-duplication plus deterministic ids make that harmless.
        await this.consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
        this.handledCount += 1;
        if (maxMessages !== undefined && this.handledCount >= maxMessages) onLimit();
      },
    });
  }

  async stop() {
    // Leaves the group at once, so that another instance takes the partitions over.
    await this.consumer.disconnect();
    await this.producer.disconnect();
  }

  /**
   * @param {string} topic @param {number} partition @param {import("kafkajs").KafkaMessage} message
   */
  async handle(topic, partition, message) {
    const where = `${topic}[${partition}]@${message.offset}`;
    let attrs, data;
    try {
      ({ attrs, data } = readEvent(message));
    } catch (error) {
      if (!(error instanceof Skip)) throw error;
      // A production consumer would also keep the record aside (a dead-letter table or
      // topic) and alert, rather than only log it.
      log("WARNING", `skipped ${where}${error.ceId ? ` ce_id=${error.ceId}` : ""}: ${error.message}`);
      return;
    }
    const { ce_id: ceId, ce_type: ceType } = attrs;

    const match = TYPE_RE.exec(ceType);
    const name = match?.groups?.name;
    if (!match || match.groups?.major !== "1" || !name || !INBOX_EVENTS.includes(name)) {
      // New event types may appear in the contract at any time: ignore what you do not
      // know instead of stopping.
      log("INFO", `skipped unknown event type ${ceType} ce_id=${ceId} at ${where}`);
      return;
    }
    if (this.seen.has(ceId)) {
      const referralId = name === "referral.routed" ? this.routed.get(ceId) : undefined;
      if (referralId !== undefined && this.replies.has(referralId)) {
        await this.sendAgain(ceId, referralId);
      } else {
        log("INFO", `skipped duplicate ${name} ce_id=${ceId}`);
      }
      return;
    }
    const problems = Contract.problems(this.contract.readers[name], data);
    if (problems.length) {
      log("WARNING", `skipped invalid ${name} ce_id=${ceId} at ${where}: ${problems.join("; ")}`);
      return;
    }
    if (data.operator !== this.operator) {
      log("WARNING", `skipped ${name} ce_id=${ceId}: meant for operator ${data.operator}`);
      return;
    }
    const referralId = data.referral_id;
    const unknown = this.contract.unknownFields(name, data);
    const note = unknown.length ? ` (ignored unknown field(s): ${unknown.join(", ")})` : "";

    let personal = {};
    if (ENCRYPTED_EVENTS.includes(name)) {
      try {
        personal = await decryptPersonalData(this.key, this.contract, name, data);
      } catch (error) {
        if (!(error instanceof Skip)) throw error;
        log("WARNING", `skipped ${name} ce_id=${ceId} referral=${referralId} at ${where}: ${error.message}`);
        return;
      }
    }

    /** @type {Array<[string, Data]>} */
    let replies = [];
    let why = "nothing to send";
    if (name === "referral.cancelled") {
      // Close your case: the citizen withdrew.
      this.cancelled.add(referralId);
      why = "cancelled, nothing more will be sent for it";
    } else if (name === "referral.reminder") {
      // The answer deadline has passed: escalate.
      why = `reminder, overdue since ${data.overdue_since}`;
    } else if (this.cancelled.has(referralId)) {
      why = "the referral was cancelled, nothing to send";
    } else if (this.answered.has(referralId)) {
      why = "already answered, nothing to send";
    } else if (name === "referral.routed") {
      replies = answerReferral(this.operator, data, personal);
    } else if (name === "referral.info_provided") {
      // Attach the adviser's message (personal.message) to your case, then answer.
      replies = answerAfterInfo(this.operator, data, personal);
    }

    if (name === "referral.routed") this.routed.set(ceId, referralId);
    if (replies.length) {
      const trace = Object.fromEntries(TRACE_HEADERS.filter((h) => attrs[h]).map((h) => [h, attrs[h]]));
      const records = await this.send(replies, trace);
      this.replies.set(referralId, [...(this.replies.get(referralId) ?? []), ...records]);
      if (replies.some(([n]) => n === "operator.answered")) this.answered.add(referralId);
      const procedure = data.procedure ? ` procedure=${data.procedure}` : "";
      log("INFO", `handled ${name} ce_id=${ceId} referral=${referralId}${procedure} -> ${replies.map(([n]) => n).join(", ")}${note}`);
    } else {
      log("INFO", `handled ${name} ce_id=${ceId} referral=${referralId} (${why})${note}`);
    }
    this.seen.add(ceId);
  }

  /**
   * Validates and produces the events; resolves, once the broker has them all, with the
   * records as sent (to send them again if asked).
   * @param {Array<[string, Data]>} events @param {Record<string, string>} [trace]
   * @returns {Promise<import("kafkajs").Message[]>}
   */
  async send(events, trace = {}) {
    for (const [name, data] of events) {
      // Never send what the contract refuses: the platform would dead-letter it.
      const problems = Contract.problems(this.contract.writers[name], data);
      if (problems.length) throw new Error(`${name} does not match its schema: ${problems.join("; ")}`);
    }
    const records = events.map(([name, data]) => outboxRecord(this.operator, name, data, trace));
    await this.produce(records);
    return records;
  }

  /**
   * A `referral.routed` we answered, delivered again: the platform asks for our replies
   * again (it lost them with its broker). The same records: same `ce_id`s, same
   * content, same order; Relais drops those it already has.
   * @param {string} ceId @param {string} referralId
   */
  async sendAgain(ceId, referralId) {
    if (this.cancelled.has(referralId)) {
      log("INFO", `skipped duplicate referral.routed ce_id=${ceId} referral=${referralId}: cancelled`);
      return;
    }
    const records = this.replies.get(referralId) ?? [];
    await this.produce(records);
    const names = records.map((r) => String(r.headers?.ce_type).replace(TYPE_RE, "$<name>"));
    log("INFO", `re-sent replies to re-delivered referral.routed ce_id=${ceId} referral=${referralId} -> ${names.join(", ")} (same ce_ids)`);
  }

  /** @param {import("kafkajs").Message[]} records */
  async produce(records) {
    // One request, in order, acknowledged by every in-sync replica (acks = -1) before
    // it resolves: the offset is committed only after that.
    await this.producer.send({ topic: this.outbox, acks: -1, messages: records });
  }
}

// --- Command line --------------------------------------------------------------------

const USAGE = `usage: node operator-consumer.mjs --operator CODE --private-key PATH [--schemas PATH]
       [--group ID] [--max-messages N] [--idle-exit SECONDS] [--log-level LEVEL]`;

async function main() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        operator: { type: "string" },
        schemas: { type: "string", default: "schemas" },
        group: { type: "string" },
        "private-key": { type: "string" },
        "max-messages": { type: "string" },
        "idle-exit": { type: "string" },
        "log-level": { type: "string", default: "INFO" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`${USAGE}\nerror: ${error.message}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const usageError = (/** @type {string} */ message) => {
    process.stderr.write(`${USAGE}\nerror: ${message}\n`);
    return 2;
  };
  const level = values["log-level"].toUpperCase();
  if (!(level in LEVELS)) return usageError(`--log-level must be one of ${Object.keys(LEVELS).join(", ")}`);
  minLevel = LEVELS[/** @type {keyof LEVELS} */ (level)];
  if (!values.operator) return usageError("--operator is required");
  if (!values["private-key"]) return usageError("--private-key is required");
  const maxMessages = values["max-messages"] === undefined ? undefined : Number(values["max-messages"]);
  const idleExit = values["idle-exit"] === undefined ? undefined : Number(values["idle-exit"]);
  if (maxMessages !== undefined && !(Number.isInteger(maxMessages) && maxMessages > 0)) {
    return usageError("--max-messages must be a positive integer");
  }
  if (idleExit !== undefined && !(idleExit > 0)) return usageError("--idle-exit must be a positive number");

  /** @type {Contract} */
  let contract;
  try {
    contract = new Contract(values.schemas);
  } catch (error) {
    return usageError(`cannot load the schemas from ${values.schemas}: ${error.message}`);
  }
  const operator = values.operator;
  if (!contract.operators.includes(operator)) {
    return usageError(`unknown operator ${JSON.stringify(operator)}; the contract knows ${contract.operators.join(", ")}`);
  }
  // The operator's private key (a JWK with `d`). Never log it.
  let jwk, key;
  try {
    jwk = JSON.parse(readFileSync(values["private-key"], "utf-8"));
    if (!jwk || jwk.kty !== "EC" || jwk.crv !== "P-256" || !jwk.d) throw new Error("not an EC P-256 private JWK");
    key = /** @type {CryptoKey} */ (await importJWK(jwk, "ECDH-ES"));
  } catch (error) {
    // The message never contains the key material.
    return usageError(`cannot use the private key ${values["private-key"]}: ${error.code ?? error.message}`);
  }
  const bootstrap = process.env.KAFKA_BOOTSTRAP_SERVERS || "127.0.0.1:9092";
  let security;
  try {
    security = securityConfig(process.env);
  } catch (error) {
    return usageError(`Kafka security settings: ${error.message}`);
  }
  // The broker's ACLs let operator <code> use the groups named `operator-<code>-*`.
  const group = values.group ?? `operator-${operator}-example-node`;
  log("INFO", `operator ${operator}, bootstrap ${bootstrap}, group ${group}, key ${jwk.kid ?? "(no kid)"}`);

  const consumer = new OperatorConsumer({ operator, bootstrap, group, contract, key, security });
  let exitCode = 0;
  /** @type {(reason: string) => void} */
  let requestStop = () => {};
  const stopped = new Promise((resolve) => {
    requestStop = resolve;
  });
  // SIGINT (Ctrl-C) and SIGTERM (docker stop, systemd, Kubernetes): finish the current
  // record, then leave the group and exit.
  process.on("SIGINT", () => requestStop("stop requested"));
  process.on("SIGTERM", () => requestStop("stop requested"));
  consumer.consumer.on(consumer.consumer.events.CRASH, ({ payload }) => {
    // kafkajs restarts the consumer by itself after a retriable error.
    if (!payload.restart) {
      log("ERROR", `consumer crashed: ${payload.error}`);
      exitCode = 1;
      requestStop("consumer crashed");
    }
  });
  /** @type {NodeJS.Timeout | undefined} */
  let idleTimer;
  if (idleExit !== undefined) {
    // Counted from the start, then from the last record.
    idleTimer = setInterval(() => {
      if (Date.now() - consumer.lastRecordAt > idleExit * 1000) {
        requestStop(`no record for ${idleExit} s, exiting (--idle-exit)`);
      }
    }, 200);
  }
  try {
    await consumer.start({
      maxMessages,
      onLimit: () => requestStop(`read ${maxMessages} record(s), exiting (--max-messages)`),
    });
    log("INFO", await stopped);
  } catch (error) {
    log("ERROR", `cannot consume: ${error}`);
    exitCode = 1;
  } finally {
    clearInterval(idleTimer);
    await consumer.stop().catch((error) => log("WARNING", `while disconnecting: ${error}`));
    log("INFO", "stopped");
  }
  return exitCode;
}

process.exit(await main());
