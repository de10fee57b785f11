"""Python twin of tools/bindings/custom/app.ts: a custom InstanceTypeStrategy with all CompileOptions set.

tools/bindings/check.sh synthesizes both and asserts the templates are identical. Keep the two files in step.
"""
from aws_cdk import App, Environment, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_s3 as s3
from aws_cdk_neuronx_patterns import NeuronxInstanceType, OptLevel, QuantDtype

from aws_cdk_neuronx_models import calm3chat22b

app = App()
stack = Stack(app, "Calm3ChatCustomStrategyStack", env=Environment(region="us-east-1"))
vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=1)
bucket = s3.Bucket(stack, "ModelBucket", enforce_ssl=True)

# jsii renders the TypeScript constants INF2_48XLARGE / INF2_24XLARGE as INF2_48_XLARGE / INF2_24_XLARGE in
# Python (and Java). Serve on inf2.48xlarge (24 NeuronCores: 3 workers of 8), compile on inf2.24xlarge; every compile option set,
# each to a value no preset uses, so a field lost between languages changes the template.
strategy = calm3chat22b.InstanceTypeStrategy(
    NeuronxInstanceType.INF2_48_XLARGE,
    NeuronxInstanceType.INF2_24_XLARGE,
    # The constructor's last parameter is the CompileOptions struct: jsii flattens a trailing struct parameter
    # into keyword arguments in Python, so the options are passed by name, not as CompileOptions(...).
    tp_degree=8,
    n_positions=2048,
    quant_dtype=QuantDtype.S8,
    opt_level=OptLevel.MINIMIZE_COMPILE_TIME,
)
calm3chat22b.SageMakerRealtimeInference(stack, "Calm3Chat", bucket=bucket, compile_vpc=vpc, instance_type_strategy=strategy)
app.synth()
