import { Stack } from 'aws-cdk-lib';
import { Construct, IConstruct } from 'constructs';

/**
 * What a stack holds once per key: a construct found by a fixed id under the stack (as NeuronxRuntime finds its
 * registry-account mapping), so that nothing scans the construct tree. It adds no resource.
 *
 * Keys are names as the template has them (`resolvedKey`): two handles on one bucket (the bucket itself and a
 * `fromBucketName`) resolve to one name, where object identity would see two.
 */
export class StackRegistry<T> extends Construct {
  /** The registry `id` of `scope`'s stack (not of a parent stack: a nested stack has its own), made on first use. */
  public static of<T>(scope: IConstruct, id: string): StackRegistry<T> {
    const stack = Stack.of(scope);
    const existing = stack.node.tryFindChild(id);
    if (existing === undefined) return new StackRegistry<T>(stack, id);
    if (!(existing instanceof StackRegistry)) throw new Error(`'${existing.node.path}' is not the library's registry: the id '${id}' is the library's.`);
    return existing as StackRegistry<T>;
  }

  private readonly entries = new Map<string, T>();

  private constructor(scope: Stack, id: string) {
    super(scope, id);
  }

  /** The value registered under `key`, if any. */
  public get(key: string): T | undefined {
    return this.entries.get(key);
  }

  /** Registers `value` under `key` (the first stays: call `get` first). */
  public register(key: string, value: T): void {
    if (!this.entries.has(key)) this.entries.set(key, value);
  }
}

/** A registry key from parts as `scope`'s stack resolves them (a token's resolved form is the same in every synth). */
export function resolvedKey(scope: IConstruct, ...parts: unknown[]): string {
  return JSON.stringify(Stack.of(scope).resolve(parts));
}
