// The one bundle of this package's Lambda handlers: a single asset to stage at synth and upload at deploy, with
// one entry point per function (handler `index.<name>`).
export { handler as compileJob } from './compile-job.lambda';
export { handler as compileJobState } from './compile-job-state.lambda';
export { handler as inferenceCode } from './inference-code.lambda';
