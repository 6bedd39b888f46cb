// ONNX Runtime baseline: median latency of one model on one .npy input, as JSON on stdout.
//   node ort_bench.js MODEL.onnx INPUT.npy --runs N --threads T [--warmup W]
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

const NPY_TYPES = {'|u1': ['uint8', Uint8Array], '<f4': ['float32', Float32Array],
                   '<i8': ['int64', BigInt64Array]};

// .npy version 1/2, C order, the dtypes above.
function readNpy(path) {
  const bytes = fs.readFileSync(path);
  if (bytes.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(`${path}: not a .npy file`);
  const major = bytes[6];
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const headerStart = major === 1 ? 10 : 12;
  const header = bytes.toString('latin1', headerStart, headerStart + headerLength);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${path}: Fortran order`);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',')
                    .map((s) => s.trim()).filter((s) => s.length).map(Number);
  if (!(descr in NPY_TYPES)) throw new Error(`${path}: unsupported dtype ${descr}`);
  const [type, ArrayType] = NPY_TYPES[descr];
  const start = headerStart + headerLength;
  const data = new ArrayType(bytes.buffer.slice(bytes.byteOffset + start,
                                                bytes.byteOffset + bytes.length));
  return new ort.Tensor(type, data, shape);
}

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
}

async function main() {
  const [modelPath, inputPath] = process.argv.slice(2, 4);
  const runs = option('--runs', 20);
  const threads = option('--threads', 1);
  const warmup = option('--warmup', 3);
  const session = await ort.InferenceSession.create(modelPath, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const feeds = {[session.inputNames[0]]: readNpy(inputPath)};
  for (let i = 0; i < warmup; ++i) await session.run(feeds);
  const times = [];
  for (let i = 0; i < runs; ++i) {
    const start = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  const median = times.length % 2 ? times[(times.length - 1) / 2]
                                   : (times[times.length / 2 - 1] + times[times.length / 2]) / 2;
  console.log(JSON.stringify({median_ms: median, runs, threads, version: ort.env.versions.common}));
}

main().catch((error) => {
  console.error(`ort_bench: ${error.message}`);
  process.exit(1);
});
