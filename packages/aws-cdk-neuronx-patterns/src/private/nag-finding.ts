import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { IConstruct } from 'constructs';
import { suppressNag } from './nag';

/**
 * The AwsSolutions-IAM5 findings that `statements` make, spelled as cdk-nag spells them: `Action::<action>` for each
 * action with a wildcard and `Resource::<resource>` for each resource with one, a reference written `<LogicalId>` or
 * `<LogicalId.Attribute>` and an `Fn::Join` joined. A suppression that lists exactly these in `appliesTo` leaves any
 * wildcard added later reported.
 *
 * Resolved now, in the stack of `scope`, which is what cdk-nag does when its aspect runs.
 */
export function wildcardFindings(scope: IConstruct, statements: iam.PolicyStatement[]): string[] {
  const stack = Stack.of(scope);
  const findings = new Set<string>();
  for (const statement of statements) {
    if (statement.effect !== iam.Effect.ALLOW) continue;
    const json = stack.resolve(statement.toStatementJson()) as { Action?: unknown; Resource?: unknown };
    for (const finding of wildcardFindingsOfJson(json)) findings.add(finding);
  }
  return [...findings];
}

/** The same for one policy statement already resolved to CloudFormation JSON. */
export function wildcardFindingsOfJson(statement: { Effect?: unknown; Action?: unknown; Resource?: unknown }): string[] {
  if (statement.Effect !== undefined && statement.Effect !== 'Allow') return [];
  const actions = asArray(statement.Action).filter((a): a is string => typeof a === 'string' && a.includes('*'));
  const resources = asArray(statement.Resource).map(flattenReference).filter(r => r.includes('*'));
  return [...actions.map(a => `Action::${a}`), ...resources.map(r => `Resource::${r}`)];
}

/**
 * The id cdk-nag gives a wildcard finding on `value` (`Resource::<Bucket.Arn>/prefix/*`, `Action::kms:ReEncrypt*`),
 * resolved in the stack of `scope`.
 */
export function nagFinding(scope: IConstruct, kind: 'Resource' | 'Action', value: string): string {
  return `${kind}::${flattenReference(Stack.of(scope).resolve(value))}`;
}

/** The default policy of a grantee that is a role made in this app, which is where its grants land. */
export function defaultPolicyOf(grantable: iam.IGrantable): IConstruct | undefined {
  const principal = grantable.grantPrincipal as Partial<IConstruct>;
  return principal.node?.tryFindChild('DefaultPolicy');
}

/** The statements of that default policy so far, as they stand before resolution (none without a policy). */
export function defaultPolicyStatements(grantable: iam.IGrantable): unknown[] {
  const policy = defaultPolicyOf(grantable) as iam.Policy | undefined;
  return policy?.document.toJSON()?.Statement ?? [];
}

/**
 * Suppresses AwsSolutions-IAM5 on the default policy of `grantable` for exactly `findings` (see wildcardFindings),
 * with the reason a reviewer reads. No findings, or no default policy, means nothing to suppress.
 */
export function suppressWildcardFindings(grantable: iam.IGrantable, findings: string[], reason: string): void {
  const policy = defaultPolicyOf(grantable);
  if (!policy || findings.length === 0) return;
  suppressNag(policy, [{ id: 'AwsSolutions-IAM5', reason, appliesTo: [...new Set(findings)] }]);
}

function asArray(value: unknown): unknown[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

// cdk-nag's flattening of a CloudFormation value (utils/flatten-cfn-reference in cdk-nag 2.x).
function flattenReference(node: unknown): string {
  if (node === undefined) return '';
  if (typeof node === 'string') return node.replace(/\$\{/g, '<').replace(/\}/g, '>');
  const obj = node as Record<string, unknown>;
  if (obj['Fn::Join']) {
    const [delimiter, items] = obj['Fn::Join'] as [string, unknown[]];
    return items.map(flattenReference).join(delimiter);
  }
  if (obj['Fn::Sub']) return flattenReference(obj['Fn::Sub']);
  if (obj['Fn::GetAtt']) {
    const [resource, attribute] = obj['Fn::GetAtt'] as [unknown, unknown];
    return `<${flattenReference(resource)}.${flattenReference(attribute)}>`;
  }
  if (obj['Fn::ImportValue']) return flattenReference(obj['Fn::ImportValue']);
  if (obj.Ref) return `<${flattenReference(obj.Ref)}>`;
  return JSON.stringify(node);
}
