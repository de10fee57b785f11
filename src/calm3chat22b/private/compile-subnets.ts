import * as ec2 from 'aws-cdk-lib/aws-ec2';

/**
 * Why the compile instance cannot run in the subnets `compileSubnets` selects from `compileVpc`, in this library's
 * prop names: no subnet at all (aws-cdk-lib would fail later, naming its own API), or public subnets (AWS Batch
 * launches the instance without a public IP, so it could reach neither ECS nor Hugging Face and the job would
 * never start).
 */
export function compileSubnetProblems(vpc: ec2.IVpc, compileSubnets: ec2.SubnetSelection | undefined): string[] {
  const selection = compileSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };
  let selected: ec2.ISubnet[];
  try {
    selected = vpc.selectSubnets(selection).subnets;
  } catch {
    // aws-cdk-lib throws when the selection names a subnet type or group the VPC does not have.
    selected = [];
  }
  const works = 'private subnets with egress (a NAT gateway), e.g. new ec2.Vpc(this, \'Vpc\', { natGateways: 1 }) or compileSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS }';
  if (selected.length === 0) {
    return [compileSubnets
      ? `compileSubnets selects no subnet of compileVpc (which has ${subnetSummary(vpc)}): the compile instance needs ${works}.`
      : `compileVpc has no private subnets with egress (it has ${subnetSummary(vpc)}), where the compile instance runs by default: `
        + `give it ${works}, or choose other subnets with compileSubnets.`];
  }
  const publicSubnets = new Set(vpc.publicSubnets.map(s => s.node.path));
  if (selected.some(s => publicSubnets.has(s.node.path))) {
    return ['compileSubnets selects public subnets, where AWS Batch gives the compile instance no public IP, so it can reach neither '
      + `ECS nor Hugging Face and the job never starts: select ${works}.`];
  }
  return [];
}

/** The VPC's subnets by kind, e.g. '2 public, 2 isolated subnets'. */
function subnetSummary(vpc: ec2.IVpc): string {
  const kinds: Array<[number, string]> = [
    [vpc.publicSubnets.length, 'public'],
    [vpc.privateSubnets.length, 'private with egress'],
    [vpc.isolatedSubnets.length, 'isolated'],
  ];
  const present = kinds.filter(([count]) => count > 0).map(([count, kind]) => `${count} ${kind}`);
  return present.length > 0 ? `${present.join(', ')} subnets` : 'no subnets';
}
