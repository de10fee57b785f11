package io.github.awscdkneuronx.bindingscheck;

import io.github.awscdkneuronx.models.calm3chat22b.InstanceTypeStrategy;
import io.github.awscdkneuronx.models.calm3chat22b.SageMakerRealtimeInference;
import io.github.awscdkneuronx.patterns.CompileOptions;
import io.github.awscdkneuronx.patterns.NeuronxInstanceType;
import io.github.awscdkneuronx.patterns.OptLevel;
import io.github.awscdkneuronx.patterns.QuantDtype;
import software.amazon.awscdk.App;
import software.amazon.awscdk.Environment;
import software.amazon.awscdk.Stack;
import software.amazon.awscdk.StackProps;
import software.amazon.awscdk.services.ec2.Vpc;
import software.amazon.awscdk.services.s3.Bucket;

/** Java twin of tools/bindings/custom/app.ts (the bindings check compares their templates). Keep them in step. */
public final class CustomStrategyApp {
    private CustomStrategyApp() {
    }

    public static void main(final String[] args) {
        App app = new App();
        Stack stack = new Stack(app, "Calm3ChatCustomStrategyStack", StackProps.builder()
                .env(Environment.builder().region("us-east-1").build())
                .build());
        Vpc vpc = Vpc.Builder.create(stack, "Vpc").maxAzs(2).natGateways(1).build();
        Bucket bucket = Bucket.Builder.create(stack, "ModelBucket").enforceSsl(true).build();

        // jsii renders INF2_48XLARGE / INF2_24XLARGE as INF2_48_XLARGE / INF2_24_XLARGE in Java.
        // Serve on inf2.48xlarge (24 NeuronCores: 3 workers of 8), compile on inf2.24xlarge; every compile option
        // set, each to a value no preset uses, so a field lost between languages changes the template.
        InstanceTypeStrategy strategy = new InstanceTypeStrategy(
                NeuronxInstanceType.INF2_48_XLARGE,
                NeuronxInstanceType.INF2_24_XLARGE,
                CompileOptions.builder()
                        .tpDegree(8)
                        .nPositions(2048)
                        .quantDtype(QuantDtype.S8)
                        .optLevel(OptLevel.MINIMIZE_COMPILE_TIME)
                        .build());
        SageMakerRealtimeInference.Builder.create(stack, "Calm3Chat")
                .bucket(bucket)
                .compileVpc(vpc)
                .instanceTypeStrategy(strategy)
                .build();
        app.synth();
    }
}
