#!/usr/bin/env python3
"""A CDK app that deploys cyberagent/calm3-22b-chat on a SageMaker endpoint (Python).

The same app as examples/typescript/app.ts, written against the Python bindings:

    cd examples/python
    python3 -m venv .venv && .venv/bin/pip install -r requirements.txt
    npx cdk synth                              # lowCost (ml.trn1.2xlarge)
    npx cdk synth -c preset=highPerformance    # ml.inf2.24xlarge
"""
import os

from aws_cdk import App, Aspects, CfnOutput, Environment, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks, NagPackSuppression, NagSuppressions
from constructs import Construct

from aws_cdk_neuronx_models import calm3chat22b

# jsii renders the TypeScript static readonly properties `lowCost` / `highPerformance` as Python class
# constants in UPPER_SNAKE_CASE.
PRESETS = {
    "lowCost": calm3chat22b.InstanceTypeStrategy.LOW_COST,
    "highPerformance": calm3chat22b.InstanceTypeStrategy.HIGH_PERFORMANCE,
}


class Calm3ChatStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        instance_type_strategy: calm3chat22b.InstanceTypeStrategy,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        # The compile instance downloads the model from Hugging Face: it needs a private subnet with a NAT gateway.
        vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=1,
            flow_logs={
                "all": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                ),
            },
        )

        access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            versioned=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        NagSuppressions.add_resource_suppressions(
            access_logs,
            [
                NagPackSuppression(
                    id="AwsSolutions-S1",
                    reason="This bucket receives the server access logs of the model bucket; logging it to itself would loop.",
                )
            ],
        )

        # Compiled artifacts (about 45 GB) are kept when the stack is deleted: a new deploy with the same inputs
        # reuses them instead of compiling again.
        bucket = s3.Bucket(
            self,
            "ModelBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="model-bucket/",
            versioned=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

        inference = calm3chat22b.SageMakerRealtimeInference(
            self,
            "Calm3Chat",
            bucket=bucket,
            compile_vpc=vpc,
            instance_type_strategy=instance_type_strategy,
        )

        CfnOutput(
            self,
            "EndpointName",
            value=inference.endpoint.endpoint_name,
            description="The SageMaker endpoint to call: InvokeEndpoint's EndpointName (README: Calling the endpoint)",
        )
        CfnOutput(self, "CompiledArtifacts", value=inference.compile.compiled_artifact_s3_url)


app = App()
preset_context = app.node.try_get_context("preset")
preset_name = "lowCost" if preset_context is None else preset_context
instance_type_strategy = PRESETS.get(preset_name)
if instance_type_strategy is None:
    raise ValueError(f"Unknown preset '{preset_name}': use -c preset=lowCost or -c preset=highPerformance.")
Calm3ChatStack(
    app,
    "Calm3ChatStack",
    # Both presets' instance types (ml.trn1.2xlarge, ml.inf2.24xlarge, inf2.8xlarge, inf2.24xlarge) exist in us-east-1.
    env=Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
        region=app.node.try_get_context("region") if app.node.try_get_context("region") is not None else "us-east-1",
    ),
    description=f"cyberagent/calm3-22b-chat on a SageMaker real-time endpoint ({preset_name})",
    instance_type_strategy=instance_type_strategy,
)
Aspects.of(app).add(AwsSolutionsChecks())
app.synth()
