// Synthesis cost of NeuronxCompile + the endpoint for a 22B model.
//
// Synthesizes, in a fresh Node process each time (as `cdk synth` does), a stack with a VPC and a bucket, either
// with or without NeuronxCompile and TransformersNeuronxSageMakerRealtimeInferenceEndpoint, alternating the two
// several times, and prints the median wall-time ratio (with / without) and the peak memory of each, and, to show
// where the difference is, the median time of building the constructs (with loading the library) and of app.synth().
// Two baselines: a bare `new App()`, and an app with the feature flags `cdk init` writes to cdk.json (with those,
// the VPC alone already stages a Lambda asset, so the fixed cost of the first file asset is in both sides).
// Run after the package is compiled (lib/): `npx projen benchmark` or `node benchmark/synth-benchmark.js [runs]`.
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

// 15 pairs: on a shared 2-core machine single runs vary by ±50 ms, and the median of 7 ratios moved by ±0.05.
const RUNS = Number(process.argv[2] ?? 15);

function child(withConstructs, cdkInitFlags) {
  const started = process.hrtime.bigint();
  const { App, Stack } = require('aws-cdk-lib');
  const ec2 = require('aws-cdk-lib/aws-ec2');
  const s3 = require('aws-cdk-lib/aws-s3');
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'neuronx-bench-'));
  const context = cdkInitFlags ? require('aws-cdk-lib/cx-api').NEW_PROJECT_DEFAULT_CONTEXT : {};
  const app = new App({ outdir, context });
  const stack = new Stack(app, 'Bench', { env: { account: '111111111111', region: 'us-east-1' } });
  const vpc = new ec2.Vpc(stack, 'Vpc');
  const bucket = new s3.Bucket(stack, 'Bucket');
  const constructsStarted = process.hrtime.bigint();
  if (withConstructs) {
    const p = require('..');
    const compile = new p.NeuronxCompile(stack, 'Compile', {
      vpc,
      bucket,
      model: p.Model.fromHuggingFace('cyberagent/calm3-22b-chat', { revision: 'bench' }),
      compileInstanceType: p.NeuronxInstanceType.INF2_24XLARGE,
      servingInstanceType: p.NeuronxInstanceType.INF2_24XLARGE,
      compileOptions: { tpDegree: 4 },
    });
    new p.TransformersNeuronxSageMakerRealtimeInferenceEndpoint(stack, 'Endpoint', {
      modelData: p.TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(compile),
    });
  }
  const synthStarted = process.hrtime.bigint();
  app.synth();
  const ended = process.hrtime.bigint();
  const seconds = Number(ended - started) / 1e9;
  // Where the difference is: loading the library and building its constructs (lazily loaded aws-cdk-lib modules
  // included), and app.synth().
  const constructSeconds = Number(synthStarted - constructsStarted) / 1e9;
  const synthSeconds = Number(ended - synthStarted) / 1e9;
  fs.rmSync(outdir, { recursive: true, force: true });
  // CPU time of this process since it started (less sensitive than wall time to other load on the machine);
  // maxRSS is in KiB.
  const cpu = process.cpuUsage();
  process.stdout.write(JSON.stringify({ seconds, constructSeconds, synthSeconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, peakMiB: process.resourceUsage().maxRSS / 1024 }));
}

function measure(withConstructs, cdkInitFlags) {
  const started = process.hrtime.bigint();
  const args = [__filename, withConstructs ? '--child-with' : '--child-without', cdkInitFlags ? 'cdk-init-flags' : 'bare'];
  const out = execFileSync(process.execPath, args, { encoding: 'utf-8' });
  const wall = Number(process.hrtime.bigint() - started) / 1e9;
  return { wall, ...JSON.parse(out) };
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function compare(cdkInitFlags) {
  const withRuns = [];
  const withoutRuns = [];
  for (let i = 0; i < RUNS; i++) {
    withoutRuns.push(measure(false, cdkInitFlags));
    withRuns.push(measure(true, cdkInitFlags));
  }
  const ratios = withRuns.map((w, i) => w.wall / withoutRuns[i].wall);
  return {
    baseline: cdkInitFlags ? 'App with the cdk init feature flags' : 'bare App',
    runs: RUNS,
    medianWallSecondsWith: median(withRuns.map(r => r.wall)),
    medianWallSecondsWithout: median(withoutRuns.map(r => r.wall)),
    medianWallTimeRatio: median(ratios),
    medianConstructSecondsWith: median(withRuns.map(r => r.constructSeconds)),
    medianSynthSecondsWith: median(withRuns.map(r => r.synthSeconds)),
    medianSynthSecondsWithout: median(withoutRuns.map(r => r.synthSeconds)),
    medianCpuSecondsWith: median(withRuns.map(r => r.cpuSeconds)),
    medianCpuSecondsWithout: median(withoutRuns.map(r => r.cpuSeconds)),
    medianCpuTimeRatio: median(withRuns.map((w, i) => w.cpuSeconds / withoutRuns[i].cpuSeconds)),
    peakMiBWith: Math.max(...withRuns.map(r => r.peakMiB)),
    peakMiBWithout: Math.max(...withoutRuns.map(r => r.peakMiB)),
  };
}

if (process.argv[2] === '--child-with' || process.argv[2] === '--child-without') {
  child(process.argv[2] === '--child-with', process.argv[3] === 'cdk-init-flags');
} else {
  console.log(JSON.stringify([compare(false), compare(true)], null, 2));
}
