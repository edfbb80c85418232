#!/usr/bin/env node
// Build the HTML reference of the contract with the official AsyncAPI generator and
// html-template: one self-contained page (styles and scripts inlined, rendered on the
// server so the text is in the HTML) from schemas/asyncapi.yaml, whose payloads pull in
// the event JSON Schemas. The JSON Schemas themselves (events/, personal/) are copied
// next to it under schemas/ so the page's readers can download them.
//
// Usage: node reference.mjs [--out build/contract] [file]
//   file defaults to schemas/asyncapi.yaml at the repository root. Offline: the template
//   is taken from node_modules (install: false); nothing is fetched.
import { cpSync, existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const require = createRequire(import.meta.url);

let out = path.join(root, 'build', 'contract');
let file = path.join(root, 'schemas', 'asyncapi.yaml');
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--out') out = path.resolve(args[++i]);
  else if (args[i].startsWith('--out=')) out = path.resolve(args[i].slice(6));
  else if (args[i] === '-h' || args[i] === '--help') {
    console.log('usage: reference.mjs [--out DIR] [asyncapi.yaml]');
    process.exit(0);
  } else file = path.resolve(args[i]);
}
if (!existsSync(file)) {
  console.error(`reference: ${file}: no such file`);
  process.exit(2);
}

const started = Date.now();
const Generator = require('@asyncapi/generator');
const template = path.dirname(require.resolve('@asyncapi/html-template/package.json'));
const templateVersion = require('@asyncapi/html-template/package.json').version;
const generatorVersion = require('@asyncapi/generator/package.json').version;

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const generator = new Generator(template, out, {
  forceWrite: true,
  install: false,
  debug: false,
  templateParams: { singleFile: 'true', outFilename: 'index.html' },
});
try {
  await generator.generateFromFile(file);
} catch (err) {
  console.error(`reference: generation failed: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
}
const html = path.join(out, 'index.html');
if (!existsSync(html) || statSync(html).size === 0) {
  console.error(`reference: ${html} was not written`);
  process.exit(1);
}
const schemasDir = path.dirname(file);
for (const sub of ['events', 'personal']) {
  const src = path.join(schemasDir, sub);
  if (existsSync(src)) cpSync(src, path.join(out, 'schemas', sub), { recursive: true });
}
cpSync(file, path.join(out, 'schemas', path.basename(file)));
const rel = path.relative(process.cwd(), html) || html;
console.log(
  `Reference: wrote ${rel} (${Math.round(statSync(html).size / 1024)} KiB; @asyncapi/generator ${generatorVersion}, ` +
    `@asyncapi/html-template ${templateVersion}, ${Date.now() - started} ms)`,
);
