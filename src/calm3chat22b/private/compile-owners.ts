import { Stack } from 'aws-cdk-lib';
import { Construct, IConstruct } from 'constructs';

/**
 * Which construct made each NeuronxCompile of a stack, by the compile's construct path: a construct found by a fixed
 * id under the stack (as the patterns package keeps its per-stack registries), so that a second construct that would
 * share a compile finds the first without scanning the construct tree. It adds no resource.
 */
export class CompileOwners<T> extends Construct {
  /** The owners of `scope`'s stack, made on first use. */
  public static of<T>(scope: IConstruct, id: string): CompileOwners<T> {
    const stack = Stack.of(scope);
    const existing = stack.node.tryFindChild(id);
    if (existing === undefined) return new CompileOwners<T>(stack, id);
    if (!(existing instanceof CompileOwners)) throw new Error(`'${existing.node.path}' is not the library's registry: the id '${id}' is the library's.`);
    return existing as CompileOwners<T>;
  }

  private readonly owners = new Map<string, T>();

  private constructor(scope: Stack, id: string) {
    super(scope, id);
  }

  /** The construct that made `compile`, if one registered it. */
  public ownerOf(compile: IConstruct): T | undefined {
    return this.owners.get(compile.node.path);
  }

  /** Registers `owner` as the maker of `compile`. */
  public register(compile: IConstruct, owner: T): void {
    if (!this.owners.has(compile.node.path)) this.owners.set(compile.node.path, owner);
  }
}
