// Builds assets/compile-code.zip: the program the compile job runs (runtime/compile), the module it shares with the
// inference handler (runtime/common/neuronx_common.py, placed beside the job's scripts as compile/neuronx_common.py so
// that `python3 code/compile/compile_job.py` imports it with no sys.path edit) and the contract, one folder up.
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

// The shared module's name in the zip, and where it is in runtime/.
const SHARED_MODULE = { name: 'compile/neuronx_common.py', source: 'common/neuronx_common.py' };

/** The zip's entries in order: `name` in the zip, `source` relative to runtime/. */
function entries() {
  const compile = fs.readdirSync(path.join(RUNTIME_DIR, 'compile'))
    .filter(name => name.endsWith('.py'))
    .map(name => ({ name: `compile/${name}`, source: `compile/${name}` }));
  return [{ name: 'contract.json', source: 'contract.json' }, ...compile, SHARED_MODULE]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

// 1980-01-01 00:00:00, the earliest time a zip (MS-DOS) timestamp can hold.
const DOS_TIME = 0;
const DOS_DATE = (1 << 5) | 1;
const UTF8_NAMES = 0x0800;
const VERSION = 20;
const MADE_BY_UNIX = (3 << 8) | VERSION;
const REGULAR_FILE_0644 = (0o100644 << 16) >>> 0;

// The fields a local file header (from byte 4) and a central directory header (from byte 6) share, in the same order:
// version needed, flags, method (0: stored), time, date, CRC-32, compressed and uncompressed size, name length
// (the extra field length after them stays 0).
function writeEntryFields(header, at, { crc, size, nameLength }) {
  header.writeUInt16LE(VERSION, at);
  header.writeUInt16LE(UTF8_NAMES, at + 2);
  header.writeUInt16LE(0, at + 4);
  header.writeUInt16LE(DOS_TIME, at + 6);
  header.writeUInt16LE(DOS_DATE, at + 8);
  header.writeUInt32LE(crc, at + 10);
  header.writeUInt32LE(size, at + 14);
  header.writeUInt32LE(size, at + 18);
  header.writeUInt16LE(nameLength, at + 22);
}

function zip(files) {
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const { name, data } of files) {
    const nameBytes = Buffer.from(name, 'utf-8');
    const fields = { crc: zlib.crc32(data), size: data.length, nameLength: nameBytes.length };
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    writeEntryFields(local, 4, fields);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(MADE_BY_UNIX, 4);
    writeEntryFields(central, 6, fields);
    // comment length, disk number, internal attributes: zero
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
  const files = entries().map(({ name, source }) => ({ name, data: fs.readFileSync(path.join(RUNTIME_DIR, source)) }));
  fs.mkdirSync(path.dirname(output), { recursive: true });
  fs.writeFileSync(output, zip(files));
  return { output, entries: files.map(f => f.name) };
}

module.exports = { build, entries, zip, DEFAULT_OUTPUT };

if (require.main === module) {
  const { output, entries: names } = build(process.argv[2] ? path.resolve(process.argv[2]) : undefined);
  console.log(`${path.relative(process.cwd(), output)}: ${names.join(', ')}`);
}
