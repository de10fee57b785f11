import { Stack } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { HandlerFunction } from './handler-function';

// The lifecycle function of each NeuronxCompile (kept out of its public API, which jsii would publish).
const LIFECYCLE_FUNCTIONS = new WeakMap<IConstruct, HandlerFunction>();

/** Records `fn` as the function that serves `compile`'s custom resources. */
export function registerCompileFunction(compile: IConstruct, fn: HandlerFunction): void {
  LIFECYCLE_FUNCTIONS.set(compile, fn);
}

/**
 * The function of `compile` that also places inference code under its prefix, when `scope` is in the same stack
 * (in another stack, its custom resource would reference a function across stacks: that stack gets its own).
 */
export function compileFunctionFor(compile: IConstruct, scope: IConstruct): HandlerFunction | undefined {
  return Stack.of(compile) === Stack.of(scope) ? LIFECYCLE_FUNCTIONS.get(compile) : undefined;
}
