#!/usr/bin/env node
// Validate an AsyncAPI document with the official AsyncAPI parser (@asyncapi/parser),
// the same engine and Spectral ruleset that `asyncapi validate` (@asyncapi/cli) runs:
// the AsyncAPI JSON Schema, $ref resolution (local and relative files such as
// ./events/*.json), the payload schemas, and the semantic rules (unique ids, channel
// parameters matching the address, operations pointing at their channel's messages, ...).
//
// Usage: node validate-asyncapi.mjs [--fail-severity error|warn|info|hint] [file]
//   file defaults to schemas/asyncapi.yaml at the repository root.
//   Exit 0: valid. Exit 1: at least one diagnostic at or above the fail severity
//   (default: warn, i.e. errors AND warnings fail; info and hints are printed only).
//   Exit 2: usage error or the file cannot be read.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Parser, fromFile } from '@asyncapi/parser';

const here = path.dirname(fileURLToPath(import.meta.url));
const LEVELS = { error: 0, warn: 1, info: 2, hint: 3 };
const NAMES = ['error', 'warning', 'info', 'hint'];

let failSeverity = 'warn';
let file = path.resolve(here, '..', '..', 'schemas', 'asyncapi.yaml');
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--fail-severity') {
    failSeverity = args[++i];
  } else if (a.startsWith('--fail-severity=')) {
    failSeverity = a.slice('--fail-severity='.length);
  } else if (a === '-h' || a === '--help') {
    console.log('usage: validate-asyncapi.mjs [--fail-severity error|warn|info|hint] [file]');
    process.exit(0);
  } else {
    file = path.resolve(a);
  }
}
if (!(failSeverity in LEVELS)) {
  console.error(`validate-asyncapi: unknown --fail-severity ${failSeverity} (error|warn|info|hint)`);
  process.exit(2);
}
if (!existsSync(file)) {
  console.error(`validate-asyncapi: ${file}: no such file`);
  process.exit(2);
}

const started = Date.now();
const parser = new Parser();
let result;
try {
  result = await fromFile(parser, file).parse();
} catch (err) {
  console.error(`validate-asyncapi: ${file}: the parser failed: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
}
const { document, diagnostics } = result;
const threshold = LEVELS[failSeverity];
let failing = 0;
const sorted = [...diagnostics].sort((a, b) => a.severity - b.severity);
for (const d of sorted) {
  const where = d.path && d.path.length ? d.path.join('/') : '(document)';
  const line = d.range && d.range.start ? `:${d.range.start.line + 1}` : '';
  const src = d.source ? path.relative(process.cwd(), d.source) : path.relative(process.cwd(), file);
  const text = `${NAMES[d.severity] ?? d.severity} ${d.code} ${src}${line} at ${where}: ${d.message}`;
  if (d.severity <= threshold) {
    failing++;
    console.error(text);
  } else {
    console.log(text);
  }
}
const rel = path.relative(process.cwd(), file) || file;
const ms = Date.now() - started;
if (!document || failing > 0) {
  console.error(
    `AsyncAPI: ${rel} is INVALID (${failing} diagnostic(s) at or above "${failSeverity}"` +
      `${document ? '' : ', document not parsed'}; @asyncapi/parser, ${ms} ms)`,
  );
  process.exit(1);
}
console.log(`AsyncAPI: ${rel} is valid (AsyncAPI ${document.version()}, @asyncapi/parser, ${ms} ms)`);
