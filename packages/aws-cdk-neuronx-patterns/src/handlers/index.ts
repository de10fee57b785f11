// The one bundle of this package's Lambda handlers: a single asset to stage at synth and upload at deploy, with
// one entry point per function (handler `index.<name>`).
export { handler as compileLifecycle } from './compile-lifecycle';
export { handler as inferenceCode } from './inference-code';
