// The independent reference that tests/data/test_gpt2_bpe.cpp compares data/gpt2_bpe.cpp against:
// GPT-2 ids of each input string from tiktoken's "gpt2" encode_ordinary (OpenAI's Rust encoder,
// compiled to WebAssembly, with its own bundled copy of the ranks) and from gpt-3-encoder's
// encode (a JavaScript port of OpenAI's encoder.py). Neither shares code or files with ours.
//
// Usage: node tests/data/gpt2_reference.mjs NODE_DIR [INPUT.json] [--no-gpt3-encoder]
//   NODE_DIR  the npm prefix where scripts/fetch_tokenizers.sh installed both packages
//             (<tokenizer cache>/node)
//   INPUT     a JSON array of strings (default: stdin)
//   --no-gpt3-encoder  skip gpt-3-encoder (it is quadratic in the length of a long input)
// Prints one JSON object: {"tiktoken": [[ids of input 0], ...], "gpt3_encoder": [...] or null,
// "unicode": the Unicode version of this node}.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const args = process.argv.slice(2);
const withGpt3Encoder = !args.includes("--no-gpt3-encoder");
const [nodeDir, inputPath] = args.filter((arg) => arg !== "--no-gpt3-encoder");
if (!nodeDir) {
  console.error("usage: node gpt2_reference.mjs NODE_DIR [INPUT.json] [--no-gpt3-encoder]");
  process.exit(2);
}

// Resolve the packages from NODE_DIR/node_modules, not from this file's folder.
const require = createRequire(path.join(path.resolve(nodeDir), "node_modules", "reference.cjs"));
let tiktoken;
let gpt3Encoder;
try {
  tiktoken = require("tiktoken");
  if (withGpt3Encoder) gpt3Encoder = require("gpt-3-encoder");
} catch (error) {
  console.error(`cannot load the reference encoders from ${nodeDir} (run scripts/fetch_tokenizers.sh): ${error.message}`);
  process.exit(3);
}

const inputs = JSON.parse(readFileSync(inputPath ?? 0, "utf8"));
if (!Array.isArray(inputs) || inputs.some((item) => typeof item !== "string")) {
  console.error("input must be a JSON array of strings");
  process.exit(2);
}

const encoding = tiktoken.get_encoding("gpt2");
const result = {
  unicode: process.versions.unicode,
  tiktoken: inputs.map((text) => Array.from(encoding.encode_ordinary(text))),
  gpt3_encoder: withGpt3Encoder ? inputs.map((text) => gpt3Encoder.encode(text)) : null,
};
encoding.free();
process.stdout.write(JSON.stringify(result));
