package io.github.awscdkneuronx.examples;

import java.util.Map;

import io.github.awscdkneuronx.models.calm3chat22b.InstanceTypeStrategy;
import io.github.cdklabs.cdknag.AwsSolutionsChecks;
import software.amazon.awscdk.App;
import software.amazon.awscdk.Aspects;
import software.amazon.awscdk.Environment;

/**
 * A CDK app that deploys cyberagent/calm3-22b-chat on a SageMaker endpoint: the same app as
 * examples/typescript/app.ts, written against the Java bindings.
 *
 * <pre>
 *   cd examples/java
 *   npx cdk synth                              # lowCost (ml.trn1.2xlarge)
 *   npx cdk synth -c preset=highPerformance    # ml.inf2.24xlarge
 * </pre>
 */
public final class Calm3ChatApp {
    // jsii renders the TypeScript static readonly properties `lowCost` / `highPerformance` as Java constants.
    private static final Map<String, InstanceTypeStrategy> PRESETS = Map.of(
            "lowCost", InstanceTypeStrategy.LOW_COST,
            "highPerformance", InstanceTypeStrategy.HIGH_PERFORMANCE);

    private Calm3ChatApp() {
    }

    public static void main(final String[] args) {
        App app = new App();
        Object presetContext = app.getNode().tryGetContext("preset");
        String presetName = presetContext == null ? "lowCost" : presetContext.toString();
        InstanceTypeStrategy instanceTypeStrategy = PRESETS.get(presetName);
        if (instanceTypeStrategy == null) {
            throw new IllegalArgumentException(
                    "Unknown preset '" + presetName + "': use -c preset=lowCost or -c preset=highPerformance.");
        }
        Object regionContext = app.getNode().tryGetContext("region");
        new Calm3ChatStack(app, "Calm3ChatStack", Calm3ChatStack.Props.builder()
                // Both presets' instance types (ml.trn1.2xlarge, ml.inf2.24xlarge, inf2.8xlarge, inf2.24xlarge)
                // exist in us-east-1.
                .env(Environment.builder()
                        .account(System.getenv("CDK_DEFAULT_ACCOUNT"))
                        .region(regionContext == null ? "us-east-1" : regionContext.toString())
                        .build())
                .description("cyberagent/calm3-22b-chat on a SageMaker real-time endpoint (" + presetName + ")")
                .instanceTypeStrategy(instanceTypeStrategy)
                .build());
        Aspects.of(app).add(new AwsSolutionsChecks());
        app.synth();
    }
}
