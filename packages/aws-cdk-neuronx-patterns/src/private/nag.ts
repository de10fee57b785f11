import { CfnResource } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';

/** One cdk-nag rule suppressed on one resource, with the reason a reviewer reads. */
export interface NagSuppression {
  readonly id: string;
  readonly reason: string;
  readonly appliesTo?: string[];
}

/**
 * Suppresses cdk-nag findings on exactly one resource, through the metadata cdk-nag reads, so that this library
 * does not depend on cdk-nag. `construct` is the CfnResource or an L2 whose default child is one.
 */
export function suppressNag(construct: IConstruct, suppressions: NagSuppression[]): void {
  const resource = (construct instanceof CfnResource ? construct : construct.node.defaultChild) as CfnResource | undefined;
  if (!resource || !(resource instanceof CfnResource)) {
    throw new Error(`suppressNag: ${construct.node.path} is not a CloudFormation resource`);
  }
  const existing = (resource.getMetadata('cdk_nag')?.rules_to_suppress ?? []) as unknown[];
  resource.addMetadata('cdk_nag', {
    rules_to_suppress: [
      ...existing,
      ...suppressions.map(s => ({ id: s.id, reason: s.reason, ...(s.appliesTo ? { applies_to: s.appliesTo } : {}) })),
    ],
  });
}
