// An independent writer of llm.c shards, for tests: what llm.c's dev/data scripts do (tiktoken's
// gpt2 encoding, <|endoftext|> before every document, a header of 256 int32 [20240520, 1, count],
// then uint16 ids), written here without any Keel code.
// Usage: node write_llmc_shards.mjs NODE_MODULES DOCS_DIR OUT_DIR
//   DOCS_DIR: nlp-corpus's builds/ folder (doc-*.json, arrays of sentences: one document each).
//   Writes OUT_DIR/tiny_val_000000.bin (the first 4 documents), tiny_train_000001.bin and
//   tiny_train_000002.bin (the next 40, half each), and OUT_DIR/sample.json: {text, ids} of one
//   sentence, for checking Keel's encoder against tiktoken's.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const [nodeModules, docsDir, outDir] = process.argv.slice(2);
const require = createRequire(path.join(nodeModules, "noop.js"));
const { get_encoding } = require("tiktoken");
const enc = get_encoding("gpt2");
const EOT = 50256;

const files = fs.readdirSync(docsDir).filter((f) => /^doc-\d+\.json$/.test(f));
files.sort((a, b) => Number(a.match(/\d+/)[0]) - Number(b.match(/\d+/)[0]));
const documents = files.slice(0, 44).map((f) => JSON.parse(fs.readFileSync(path.join(docsDir, f), "utf8")).join(" "));

function writeShard(name, docs) {
  const ids = [];
  for (const doc of docs) {
    ids.push(EOT);
    for (const id of enc.encode_ordinary(doc)) ids.push(id);
  }
  const header = new Int32Array(256);
  header[0] = 20240520;
  header[1] = 1;
  header[2] = ids.length;
  const body = Uint16Array.from(ids);
  fs.writeFileSync(path.join(outDir, name), Buffer.concat([Buffer.from(header.buffer), Buffer.from(body.buffer)]));
  return ids.length;
}

fs.mkdirSync(outDir, { recursive: true });
const counts = [
  writeShard("tiny_val_000000.bin", documents.slice(0, 4)),
  writeShard("tiny_train_000001.bin", documents.slice(4, 24)),
  writeShard("tiny_train_000002.bin", documents.slice(24, 44)),
];
const text = "The house was quiet, and Café owners' “quotes” cost $3.50 —  twice\n\nas much!";
fs.writeFileSync(path.join(outDir, "..", "sample.json"), JSON.stringify({ text, ids: Array.from(enc.encode_ordinary(text)) }));
console.log(`wrote shards of ${counts.join(", ")} tokens`);
enc.free();
