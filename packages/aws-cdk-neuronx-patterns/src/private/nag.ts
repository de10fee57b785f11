import * as cdk from 'aws-cdk-lib';
import { IConstruct } from 'constructs';

/** One cdk-nag rule suppressed on one resource, with the reason a reviewer reads. */
export interface NagSuppression {
  readonly id: string;
  readonly reason: string;
  readonly appliesTo?: string[];
}

/**
 * Suppresses cdk-nag findings on exactly one resource, so that this library does not depend on cdk-nag, in the two
 * ways the two cdk-nag majors read:
 * - cdk-nag 2.x reads the `cdk_nag` metadata of the CfnResource (`rules_to_suppress`, `applies_to` per finding);
 * - cdk-nag 3.x ignores that metadata and reads the acknowledgements of aws-cdk-lib's `Validations` (aws-cdk-lib
 *   2.257 and later) on the resource and its ancestors, one per finding, `<rule>[<finding>]` for a rule with findings
 *   (cdk-nag 3.0.2 README "Migrating from v2", `NagPack.applyRule`/`isAcknowledged` in lib/nag-pack.js).
 * `construct` is the CfnResource or an L2 whose default child is one.
 */
export function suppressNag(construct: IConstruct, suppressions: NagSuppression[]): void {
  const resource = (construct instanceof cdk.CfnResource ? construct : construct.node.defaultChild) as cdk.CfnResource | undefined;
  if (!resource || !(resource instanceof cdk.CfnResource)) {
    throw new Error(`suppressNag: ${construct.node.path} is not a CloudFormation resource`);
  }
  const existing = (resource.getMetadata('cdk_nag')?.rules_to_suppress ?? []) as unknown[];
  resource.addMetadata('cdk_nag', {
    rules_to_suppress: [
      ...existing,
      ...suppressions.map(s => ({ id: s.id, reason: s.reason, ...(s.appliesTo ? { applies_to: s.appliesTo } : {}) })),
    ],
  });
  acknowledge(resource, suppressions.flatMap(s =>
    (s.appliesTo ?? [undefined]).map(finding => ({ id: finding === undefined ? s.id : `${s.id}[${finding}]`, reason: s.reason }))));
}

/** The part of aws-cdk-lib's `Validations` (2.257 and later) that suppressNag uses. */
interface ValidationsApi {
  readonly ACKNOWLEDGED_RULES_METADATA_KEY: string;
  of(scope: IConstruct): { acknowledge(...rules: Acknowledgement[]): void };
}

interface Acknowledgement {
  readonly id: string;
  readonly reason: string;
}

/**
 * Acknowledges each finding on `resource` through aws-cdk-lib's `Validations`, when the aws-cdk-lib loaded at run
 * time has it: the library compiles against its floor, 2.245.0, whose typings have none, so it is looked up by name.
 *
 * `acknowledge` parses ids: it rejects unbalanced brackets and turns spaces into '-' (aws-cdk-lib 2.276.0,
 * core/lib/validation/private/validation-id.js), and a finding names a user's S3 prefix, which may hold either. Such
 * an id is recorded as the metadata entry `acknowledge` itself writes, `{ [id]: reason }` under
 * `Validations.ACKNOWLEDGED_RULES_METADATA_KEY`, which is what cdk-nag 3 compares finding ids with (`isAcknowledged`).
 */
function acknowledge(resource: cdk.CfnResource, acknowledgements: Acknowledgement[]): void {
  const validations = (cdk as unknown as { Validations?: ValidationsApi }).Validations;
  if (!validations) return;
  for (const ack of acknowledgements) {
    if (!/\s/.test(ack.id)) {
      try {
        validations.of(resource).acknowledge(ack);
        continue;
      } catch (e) {
        if (!String((e as Error).message).startsWith('Invalid validation rule ID')) throw e;
      }
    }
    resource.node.addMetadata(validations.ACKNOWLEDGED_RULES_METADATA_KEY, { [ack.id]: ack.reason });
  }
}
