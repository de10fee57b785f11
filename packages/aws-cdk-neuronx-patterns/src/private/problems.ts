import { Token } from 'aws-cdk-lib';

/**
 * How every check in the library reports: a function returns the reasons a configuration cannot work as sentences that
 * name the prop, the value and the fix (empty when it can work), and the caller throws them all at once.
 */

/** Throws one error listing every problem, or does nothing. */
export function throwIfProblems(what: string, problems: string[]): void {
  if (problems.length > 0) {
    throw new Error(`${what} cannot work:\n- ${problems.join('\n- ')}`);
  }
}

/** Checks a value is a positive integer; returns a problem sentence or nothing. */
export function checkPositiveInteger(prop: string, value: number | undefined): string[] {
  if (value === undefined) return [];
  if (Token.isUnresolved(value)) {
    return [`${prop} is a token (e.g. a CfnParameter): it decides what is compiled and must be a number known at synth.`];
  }
  if (!Number.isInteger(value) || value < 1) {
    return [`${prop} is ${value}: it must be a positive whole number.`];
  }
  return [];
}

/** Why the capacity bounds of an endpoint variant cannot work. */
export function capacityProblems(minCapacity: number, maxCapacity: number): string[] {
  if (Token.isUnresolved(minCapacity) || Token.isUnresolved(maxCapacity)) return [];
  const problems: string[] = [];
  for (const [prop, value] of [['minCapacity', minCapacity], ['maxCapacity', maxCapacity]] as const) {
    if (!Number.isInteger(value) || value < 1) {
      // A variant keeps at least one instance (SageMaker developer guide, "Register a model": min and max at least 1).
      problems.push(`${prop} is ${value}: it must be a whole number of instances, at least 1.`);
    }
  }
  if (problems.length > 0) return problems;
  if (maxCapacity < minCapacity) {
    problems.push(`maxCapacity (${maxCapacity}) is less than minCapacity (${minCapacity}): raise maxCapacity to at least ${minCapacity}.`);
  }
  return problems;
}
