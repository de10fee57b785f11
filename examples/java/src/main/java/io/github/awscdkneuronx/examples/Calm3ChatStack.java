package io.github.awscdkneuronx.examples;

import java.util.List;
import java.util.Map;

import io.github.awscdkneuronx.models.calm3chat22b.InstanceTypeStrategy;
import io.github.awscdkneuronx.models.calm3chat22b.SageMakerRealtimeInference;
import io.github.cdklabs.cdknag.NagPackSuppression;
import io.github.cdklabs.cdknag.NagSuppressions;
import software.amazon.awscdk.CfnOutput;
import software.amazon.awscdk.Environment;
import software.amazon.awscdk.RemovalPolicy;
import software.amazon.awscdk.Stack;
import software.amazon.awscdk.StackProps;
import software.amazon.awscdk.services.ec2.FlowLogDestination;
import software.amazon.awscdk.services.ec2.FlowLogOptions;
import software.amazon.awscdk.services.ec2.FlowLogTrafficType;
import software.amazon.awscdk.services.ec2.Vpc;
import software.amazon.awscdk.services.s3.BlockPublicAccess;
import software.amazon.awscdk.services.s3.Bucket;
import software.amazon.awscdk.services.s3.BucketEncryption;
import software.constructs.Construct;

/** A VPC for the compile job, a bucket for the model artifacts, and calm3-22b-chat on a SageMaker endpoint. */
public class Calm3ChatStack extends Stack {

    /** The stack's properties: the usual StackProps plus the instance type strategy. */
    public static final class Props {
        private final Environment env;
        private final String description;
        private final InstanceTypeStrategy instanceTypeStrategy;

        private Props(final Builder builder) {
            this.env = builder.env;
            this.description = builder.description;
            this.instanceTypeStrategy = builder.instanceTypeStrategy;
        }

        public static Builder builder() {
            return new Builder();
        }

        /** Builds {@link Props}. */
        public static final class Builder {
            private Environment env;
            private String description;
            private InstanceTypeStrategy instanceTypeStrategy;

            public Builder env(final Environment value) {
                this.env = value;
                return this;
            }

            public Builder description(final String value) {
                this.description = value;
                return this;
            }

            public Builder instanceTypeStrategy(final InstanceTypeStrategy value) {
                this.instanceTypeStrategy = value;
                return this;
            }

            public Props build() {
                return new Props(this);
            }
        }
    }

    public Calm3ChatStack(final Construct scope, final String id, final Props props) {
        super(scope, id, StackProps.builder().env(props.env).description(props.description).build());

        // The compile instance downloads the model from Hugging Face: it needs a private subnet with a NAT gateway.
        Vpc vpc = Vpc.Builder.create(this, "Vpc")
                .maxAzs(2)
                .natGateways(1)
                .flowLogs(Map.of("all", FlowLogOptions.builder()
                        .destination(FlowLogDestination.toCloudWatchLogs())
                        .trafficType(FlowLogTrafficType.ALL)
                        .build()))
                .build();

        Bucket accessLogs = Bucket.Builder.create(this, "AccessLogs")
                .encryption(BucketEncryption.S3_MANAGED)
                .enforceSsl(true)
                .blockPublicAccess(BlockPublicAccess.BLOCK_ALL)
                .versioned(true)
                .removalPolicy(RemovalPolicy.RETAIN)
                .build();
        NagSuppressions.addResourceSuppressions(accessLogs, List.of(NagPackSuppression.builder()
                .id("AwsSolutions-S1")
                .reason("This bucket receives the server access logs of the model bucket; logging it to itself would loop.")
                .build()));

        // Compiled artifacts (about 45 GB) are kept when the stack is deleted: a new deploy with the same inputs
        // reuses them instead of compiling again.
        Bucket bucket = Bucket.Builder.create(this, "ModelBucket")
                .encryption(BucketEncryption.S3_MANAGED)
                .enforceSsl(true)
                .blockPublicAccess(BlockPublicAccess.BLOCK_ALL)
                .serverAccessLogsBucket(accessLogs)
                .serverAccessLogsPrefix("model-bucket/")
                .versioned(true)
                .removalPolicy(RemovalPolicy.RETAIN)
                .build();

        SageMakerRealtimeInference inference = SageMakerRealtimeInference.Builder.create(this, "Calm3Chat")
                .bucket(bucket)
                .compileVpc(vpc)
                .instanceTypeStrategy(props.instanceTypeStrategy)
                .build();

        CfnOutput.Builder.create(this, "EndpointName")
                .value(inference.getEndpoint().getEndpointName())
                .description("The SageMaker endpoint to call: InvokeEndpoint's EndpointName (README: Calling the endpoint)")
                .build();
        CfnOutput.Builder.create(this, "CompiledArtifacts").value(inference.getCompile().getCompiledArtifactS3Url()).build();
    }
}
