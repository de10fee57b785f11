#!/usr/bin/env python3
"""calm3-22b-chat behind a REST API, with alarms and autoscaling (Python).

The same app as examples/wiring/typescript/app.ts (read its comments for the why of each setting), written against
the Python bindings:

    cd examples/wiring/python
    python3 -m venv .venv && .venv/bin/pip install -r ../../python/requirements.txt
    npx cdk synth

Every resource passes cdk-nag's AwsSolutions pack (2.x and 3.x) with no suppression or acknowledgement.
"""
import os

from aws_cdk import App, ArnFormat, Aspects, CfnOutput, Duration, Environment, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_wafv2 as wafv2
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from aws_cdk_neuronx_models import calm3chat22b


class Calm3ApiStack(Stack):
    """calm3-22b-chat (lowCost) on a SageMaker endpoint, a REST API in front of it, its alarms and its autoscaling."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)

        # --- the model: as in examples/python/app.py ---------------------------------------------------------------
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
        calm3 = calm3chat22b.SageMakerRealtimeInference(
            self,
            "Calm3Chat",
            bucket=bucket,
            compile_vpc=vpc,
            instance_type_strategy=calm3chat22b.InstanceTypeStrategy.LOW_COST,
        )
        self.inference = calm3

        # --- alarms, each notifying an encrypted, TLS-only topic that CloudWatch may use the key of ------------------
        alarm_topic_key = kms.Key(self, "AlarmTopicKey", enable_key_rotation=True)
        alarm_topic_key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        self.alarm_topic = sns.Topic(self, "AlarmTopic", master_key=alarm_topic_key, enforce_ssl=True)
        # enforce_ssl's topic policy replaces SNS's default one: let this account's CloudWatch alarms publish again.
        self.alarm_topic.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.alarm_topic.topic_arn],
                conditions={
                    "ArnLike": {
                        "aws:SourceArn": self.format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )
        calm3.endpoint.add_alarms(action=cloudwatch_actions.SnsAction(self.alarm_topic))

        # --- autoscaling: one to two instances, on the requests each instance is answering or holding --------------
        calm3.endpoint.auto_scale_instance_count(max_capacity=2).scale_on_concurrent_requests("ConcurrentRequests")

        # --- the REST API: POST /chat, for signed-in Cognito users, logged, validated, behind a web ACL --------------
        users = cognito.UserPool(
            self,
            "Users",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
            ),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            removal_policy=RemovalPolicy.RETAIN,
        )
        client = users.add_client("ChatClient", auth_flows=cognito.AuthFlow(user_srp=True))

        access_log_group = logs.LogGroup(
            self,
            "ApiAccessLogs",
            retention=logs.RetentionDays.ONE_YEAR,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.api = apigateway.RestApi(
            self,
            "ChatApi",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            # API Gateway logs through the account's CloudWatch Logs role: set it once per account and region
            # (`aws apigateway update-account`) before deploying.
            cloud_watch_role=False,
            deploy_options=apigateway.StageOptions(
                access_log_destination=apigateway.LogGroupLogDestination(access_log_group),
                # In Python every field of the standard JSON format is named (TypeScript's call takes them all by
                # default).
                access_log_format=apigateway.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                logging_level=apigateway.MethodLoggingLevel.ERROR,
                tracing_enabled=True,
            ),
        )
        chat_request = self.api.add_model(
            "ChatRequest",
            content_type="application/json",
            schema=apigateway.JsonSchema(
                schema=apigateway.JsonSchemaVersion.DRAFT4,
                type=apigateway.JsonSchemaType.OBJECT,
                required=["messages"],
                properties={"messages": apigateway.JsonSchema(type=apigateway.JsonSchemaType.ARRAY, min_items=1)},
            ),
        )
        validator = self.api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        authorizer = apigateway.CognitoUserPoolsAuthorizer(self, "ChatAuthorizer", cognito_user_pools=[users])

        self.api.root.add_resource("chat").add_method(
            "POST",
            apigateway.SagemakerIntegration(
                calm3.endpoint,
                # API Gateway's default; going above 29 s needs a raised quota.
                timeout=Duration.seconds(29),
                # SageMaker's errors reach the client as errors, not as 200s.
                integration_responses=[
                    apigateway.IntegrationResponse(status_code="200"),
                    apigateway.IntegrationResponse(status_code="400", selection_pattern=r"4\d{2}"),
                    apigateway.IntegrationResponse(status_code="502", selection_pattern=r"5\d{2}"),
                ],
            ),
            authorizer=authorizer,
            authorization_type=apigateway.AuthorizationType.COGNITO,
            request_validator=validator,
            request_models={"application/json": chat_request},
            method_responses=[apigateway.MethodResponse(status_code="400"), apigateway.MethodResponse(status_code="502")],
        )

        # Each caller may send 100 requests in 5 minutes: every request holds a model worker for up to 50 seconds.
        # AWS's known-bad-inputs rule group blocks request patterns of known exploits (such as Log4j's JNDI lookups).
        web_acl = wafv2.CfnWebACL(
            self,
            "ChatApiWebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow=wafv2.CfnWebACL.AllowActionProperty()),
            visibility_config=wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name="ChatApiWebAcl", sampled_requests_enabled=True
            ),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="RequestsPerCaller",
                    priority=0,
                    action=wafv2.CfnWebACL.RuleActionProperty(block=wafv2.CfnWebACL.BlockActionProperty()),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(aggregate_key_type="IP", limit=100)
                    ),
                    visibility_config=wafv2.CfnWebACL.VisibilityConfigProperty(
                        cloud_watch_metrics_enabled=True, metric_name="RequestsPerCaller", sampled_requests_enabled=True
                    ),
                ),
                wafv2.CfnWebACL.RuleProperty(
                    name="KnownBadInputs",
                    priority=1,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name="AWSManagedRulesKnownBadInputsRuleSet"
                        )
                    ),
                    visibility_config=wafv2.CfnWebACL.VisibilityConfigProperty(
                        cloud_watch_metrics_enabled=True, metric_name="KnownBadInputs", sampled_requests_enabled=True
                    ),
                ),
            ],
        )
        wafv2.CfnWebACLAssociation(
            self,
            "ChatApiWebAclAssociation",
            resource_arn=self.api.deployment_stage.stage_arn,
            web_acl_arn=web_acl.attr_arn,
        )

        CfnOutput(
            self,
            "EndpointName",
            value=calm3.endpoint.endpoint_name,
            description="The SageMaker endpoint: InvokeEndpoint's EndpointName",
        )
        CfnOutput(
            self,
            "ChatUrl",
            value=self.api.url_for_path("/chat"),
            description="POST a chat request here with a Cognito ID token in the Authorization header",
        )
        CfnOutput(self, "UserPoolId", value=users.user_pool_id)
        CfnOutput(self, "UserPoolClientId", value=client.user_pool_client_id)


def add_aws_solutions_checks(app: App) -> None:
    """Adds cdk-nag's AwsSolutions pack to the whole app in the form the installed cdk-nag takes.

    cdk-nag 3.x (what `pip install cdk-nag` gives today; it needs aws-cdk-lib 2.257 or later) is a validation plugin:
    `Validations.of(app).add_plugins(AwsSolutionsChecks())`. cdk-nag 2.x, which this repository's build pins next to
    aws-cdk-lib 2.245, is an aspect: `Aspects.of(app).add(AwsSolutionsChecks())`. In your own app, the one line of
    your version is enough.
    """
    checks = AwsSolutionsChecks()
    if hasattr(checks, "visit"):
        Aspects.of(app).add(checks)
        return
    import aws_cdk  # aws-cdk-lib 2.245, which this repository pins, has no Validations: looked up when needed

    aws_cdk.Validations.of(app).add_plugins(checks)


if __name__ == "__main__":
    app = App()
    Calm3ApiStack(
        app,
        "Calm3ApiStack",
        # lowCost's instance types (ml.trn1.2xlarge, inf2.8xlarge) exist in us-east-1.
        env=Environment(
            account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
            region=app.node.try_get_context("region") if app.node.try_get_context("region") is not None else "us-east-1",
        ),
        description="cyberagent/calm3-22b-chat behind a REST API, with alarms and autoscaling",
    )
    add_aws_solutions_checks(app)
    app.synth()
