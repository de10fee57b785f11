import { Stack } from 'aws-cdk-lib';
import { NeuronxCompile, NeuronxCompileProps } from 'aws-cdk-neuronx-patterns';
// The artifact prefix as NeuronxCompile computes it, without building one: a pure function of the props.
import { compileSettings } from 'aws-cdk-neuronx-patterns/lib/private/compile-configuration';
import { Construct } from 'constructs';

/**
 * One compile per artifact prefix in a stack. Two SageMakerRealtimeInference constructs with the same model,
 * revision and strategy in one stack would otherwise build two Batch jobs that compile the same thing into the same
 * prefix at the same time. The first construct's compile is shared instead: its logical IDs do not change, and the
 * second endpoint serves the same prefix (model data made from one compile shares its code placement).
 */

interface Registered {
  readonly compile: NeuronxCompile;
  /** Who made the compile, for messages. */
  readonly owner: string;
  /** The bucket and prefix the compile writes. */
  readonly target: string;
  /** The settings that change how the job runs but not what it writes, by prop name. */
  readonly runSettings: Record<string, string>;
}

const COMPILES = new WeakMap<Stack, Registered[]>();

/**
 * The NeuronxCompile that `props` describe: one already made in this stack for the same bucket and prefix with
 * the same run settings, or a new one in `scope` with `id`. Throws when one exists with other run settings (sharing
 * it would silently drop them, and a second job would write the first one's prefix).
 *
 * @param runSettings the compile props that do not determine the artifacts, under the caller's prop names
 */
export function sharedCompile(scope: Construct, id: string, props: NeuronxCompileProps, runSettings: Record<string, unknown>): NeuronxCompile {
  const stack = Stack.of(scope);
  const prefix = compileSettings(props).artifactPrefix;
  const target = `${resolved(stack, props.bucket.bucketName)}/${prefix}`;
  const settings = Object.fromEntries(Object.entries(runSettings).map(([name, value]) => [name, resolved(stack, value)]));
  const registered = COMPILES.get(stack) ?? [];
  const existing = registered.find(r => r.target === target);
  if (existing) {
    const differ = Object.keys(settings).filter(name => settings[name] !== existing.runSettings[name]);
    if (differ.length > 0) {
      throw new Error(`SageMakerRealtimeInference '${scope.node.path}' compiles the same artifacts as '${existing.owner}' (same model, `
        + `revision, strategy and bucket: prefix ${prefix}), and constructs that compile the same artifacts in one stack share one compile, `
        + `but ${differ.join(' and ')} differ: give both the same ${differ.join(' and ')} to share the compile, or give this one another `
        + 'artifactRootPrefix to compile its own copy.');
    }
    return existing.compile;
  }
  const compile = new NeuronxCompile(scope, id, props);
  COMPILES.set(stack, [...registered, { compile, owner: scope.node.path, target, runSettings: settings }]);
  return compile;
}

/** A value as it appears in the template (tokens resolved), as a string to compare. */
function resolved(stack: Stack, value: unknown): string {
  return JSON.stringify(stack.resolve(value)) ?? 'undefined';
}
