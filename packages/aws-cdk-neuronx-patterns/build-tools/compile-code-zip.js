// Builds assets/compile-code.zip: the program the compile job runs (runtime/compile), the inference handler whose
// model-building function it imports (runtime/inference/inference.py) and the contract both read.
//
// NeuronxCompile stages this one file instead of the runtime/ folder with exclude patterns: the fingerprint and the
// copy of a filtered folder matched every file against every pattern (minimatch), about a tenth of what the
// constructs add to a synth. The job downloads it as code.zip and unpacks it with `python3 -m zipfile -e`, as it did
// the zip the CDK CLI made of the folder.
//
// The bytes depend on the files' names and contents only (sorted entries, a fixed timestamp, stored without
// compression, so no zlib version can change them): the asset hash, and with it the integ snapshots, are the same
// on every machine.
//
// Usage: node build-tools/compile-code-zip.js [output]   (default: assets/compile-code.zip)
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const RUNTIME_DIR = path.join(__dirname, '..', 'runtime');
const DEFAULT_OUTPUT = path.join(__dirname, '..', 'assets', 'compile-code.zip');

/** The zip's entries, relative to runtime/, in order. */
function entries() {
  const compile = fs.readdirSync(path.join(RUNTIME_DIR, 'compile'))
    .filter(name => name.endsWith('.py'))
    .map(name => `compile/${name}`);
  return ['contract.json', ...compile, 'inference/inference.py'].sort();
}

// 1980-01-01 00:00:00, the earliest time a zip (MS-DOS) timestamp can hold.
const DOS_TIME = 0;
const DOS_DATE = (1 << 5) | 1;
const UTF8_NAMES = 0x0800;
const VERSION = 20;
const MADE_BY_UNIX = (3 << 8) | VERSION;
const REGULAR_FILE_0644 = (0o100644 << 16) >>> 0;

function zip(files) {
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const { name, data } of files) {
    const nameBytes = Buffer.from(name, 'utf-8');
    const crc = zlib.crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(VERSION, 4);
    local.writeUInt16LE(UTF8_NAMES, 6);
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt16LE(DOS_TIME, 10);
    local.writeUInt16LE(DOS_DATE, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    local.writeUInt16LE(0, 28);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(MADE_BY_UNIX, 4);
    central.writeUInt16LE(VERSION, 6);
    central.writeUInt16LE(UTF8_NAMES, 8);
    central.writeUInt16LE(0, 10);
    central.writeUInt16LE(DOS_TIME, 12);
    central.writeUInt16LE(DOS_DATE, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBytes.length, 28);
    // extra field, comment, disk number, internal attributes: all zero
    central.writeUInt32LE(REGULAR_FILE_0644, 38);
    central.writeUInt32LE(offset, 42);
    locals.push(local, nameBytes, data);
    centrals.push(central, nameBytes);
    offset += local.length + nameBytes.length + data.length;
  }
  const centralSize = centrals.reduce((sum, b) => sum + b.length, 0);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(files.length, 8);
  end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(centralSize, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, ...centrals, end]);
}

function build(output = DEFAULT_OUTPUT) {
  if (typeof zlib.crc32 !== 'function') throw new Error(`compile-code-zip needs zlib.crc32 (Node.js 20.15 or newer); this is ${process.version}.`);
  const files = entries().map(name => ({ name, data: fs.readFileSync(path.join(RUNTIME_DIR, name)) }));
  fs.mkdirSync(path.dirname(output), { recursive: true });
  fs.writeFileSync(output, zip(files));
  return { output, entries: files.map(f => f.name) };
}

module.exports = { build, entries, DEFAULT_OUTPUT };

if (require.main === module) {
  const { output, entries: names } = build(process.argv[2] ? path.resolve(process.argv[2]) : undefined);
  console.log(`${path.relative(process.cwd(), output)}: ${names.join(', ')}`);
}
