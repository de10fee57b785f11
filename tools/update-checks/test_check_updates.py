"""The update check catches each class of fault on a hand-made pair, and passes the same pair done right."""

import copy
import json

import pytest

import check_updates
from check_updates import check_pair


def template(**resources):
    return {"Resources": copy.deepcopy(resources)}


def compute_environment(**props):
    return {"Type": "AWS::Batch::ComputeEnvironment", "Properties": {"Type": "managed", "ComputeResources": {"Type": "EC2"}, **props}}


def compile_stack(wait_suffix, prefix="models/m/0123/", timeout="38700", bucket=None, handle_suffix=None):
    handle = f"WaitHandle{handle_suffix or wait_suffix}"
    return template(**{
        "CompileJob": {"Type": "Custom::NeuronxCompileJob", "Properties": {
            "ArtifactBucket": bucket or {"Ref": "Bucket"}, "ArtifactPrefix": prefix, "WaitHandleUrl": {"Ref": handle}}},
        handle: {"Type": "AWS::CloudFormation::WaitConditionHandle"},
        f"Wait{wait_suffix}": {"Type": "AWS::CloudFormation::WaitCondition",
                               "Properties": {"Count": 1, "Handle": {"Ref": handle}, "Timeout": timeout}},
    })


# --- rule 1: a create-only property under a fixed physical name

def test_the_schemas_name_the_create_only_properties():
    assert ["ComputeEnvironmentName"] in check_updates.create_only_paths("AWS::Batch::ComputeEnvironment")
    assert check_updates.name_properties("AWS::Batch::ComputeEnvironment") == ["ComputeEnvironmentName"]
    assert check_updates.name_properties("AWS::EC2::SecurityGroup") == ["GroupName"]
    # A permission's FunctionName is the function it grants on, not its own name.
    assert check_updates.name_properties("AWS::Lambda::Permission") == []


def test_a_create_only_change_under_a_literal_name_is_a_fault():
    before = template(Env=compute_environment(ComputeEnvironmentName="compile"))
    after = template(Env=compute_environment(ComputeEnvironmentName="compile", Tags={"team": "ml"}))
    faults = check_pair(before, after)
    assert len(faults) == 1
    assert "Env (AWS::Batch::ComputeEnvironment) changes create-only Tags under the fixed name ComputeEnvironmentName" in faults[0]


def test_a_nested_create_only_change_under_a_joined_name_is_a_fault():
    name = {"Fn::Join": ["-", [{"Ref": "AWS::StackName"}, "compile"]]}
    before = template(Env=compute_environment(ComputeEnvironmentName=name, ComputeResources={"SpotIamFleetRole": "a"}))
    after = template(Env=compute_environment(ComputeEnvironmentName=name, ComputeResources={"SpotIamFleetRole": "b"}))
    assert "changes create-only ComputeResources/SpotIamFleetRole" in check_pair(before, after)[0]


def test_the_same_change_without_a_fixed_name_is_replaced_and_fine():
    assert check_pair(template(Env=compute_environment()), template(Env=compute_environment(Tags={"team": "ml"}))) == []
    # A name that is another resource's attribute changes with a replacement of that resource: not fixed.
    named = {"Fn::GetAtt": ["Other", "Name"]}
    before = template(Env=compute_environment(ComputeEnvironmentName=named))
    after = template(Env=compute_environment(ComputeEnvironmentName=named, Tags={"team": "ml"}))
    assert check_pair(before, after) == []


def test_a_change_of_the_name_itself_is_a_replacement_under_a_new_name():
    before = template(Env=compute_environment(ComputeEnvironmentName="compile-a"))
    after = template(Env=compute_environment(ComputeEnvironmentName="compile-b", Tags={"team": "ml"}))
    assert check_pair(before, after) == []


def test_an_updatable_property_under_a_fixed_name_is_fine():
    before = template(Env=compute_environment(ComputeEnvironmentName="compile", State="ENABLED"))
    after = template(Env=compute_environment(ComputeEnvironmentName="compile", State="DISABLED"))
    assert check_pair(before, after) == []


# --- rule 2: a wait condition never changes under the same logical id

def test_a_wait_condition_whose_timeout_changes_under_the_same_id_is_a_fault():
    faults = check_pair(compile_stack("A", timeout="38700"), compile_stack("A", timeout="10800"))
    assert any("WaitA (AWS::CloudFormation::WaitCondition) changes under the same logical id" in f for f in faults)


def test_a_wait_condition_that_moves_to_another_handle_under_the_same_id_is_a_fault():
    faults = check_pair(compile_stack("A"), compile_stack("A", handle_suffix="B"))
    assert any("WaitA (AWS::CloudFormation::WaitCondition) changes under the same logical id" in f for f in faults)


# --- rule 3: new artifacts or a new wait setting need a new WaitCondition and a new handle

@pytest.mark.parametrize("change", [
    {"prefix": "other-root/m/0123/"},
    {"bucket": "other-bucket"},
])
def test_a_new_artifact_location_on_the_old_wait_is_a_fault(change):
    faults = check_pair(compile_stack("A"), compile_stack("A", **change))
    assert len(faults) == 1
    assert "CompileJob (Custom::NeuronxCompileJob) changes Artifact" in faults[0]
    assert "waits on WaitHandleA and WaitA of the previous deploy" in faults[0]


def test_a_new_wait_on_the_old_handle_is_a_fault():
    faults = check_pair(compile_stack("A"), compile_stack("B", prefix="other-root/m/0123/", handle_suffix="A"))
    assert faults == ["CompileJob (Custom::NeuronxCompileJob) changes ArtifactPrefix but waits on WaitHandleA of the previous deploy: "
                      "it needs a new WaitCondition and a new handle"]


def test_a_new_timeout_on_a_new_wait_with_the_old_handle_is_a_fault():
    faults = check_pair(compile_stack("A"), compile_stack("B", timeout="10800", handle_suffix="A"))
    assert faults == ["CompileJob (Custom::NeuronxCompileJob) changes the wait's properties but waits on WaitHandleA of the previous deploy: "
                      "it needs a new WaitCondition and a new handle"]


def test_a_handle_url_that_is_no_wait_conditions_handle_is_a_fault():
    after = compile_stack("A")
    after["Resources"]["CompileJob"]["Properties"]["WaitHandleUrl"] = "https://example.com/handle"
    assert "WaitHandleUrl \"https://example.com/handle\" is not the handle of a WaitCondition" in check_pair(compile_stack("A"), after)[0]


@pytest.mark.parametrize("change", [
    {"prefix": "other-root/m/0123/"},
    {"bucket": "other-bucket"},
    {"timeout": "10800"},
])
def test_a_new_wait_with_a_new_handle_is_fine(change):
    assert check_pair(compile_stack("A"), compile_stack("B", **change)) == []


def model(depends_on):
    return {"Type": "AWS::SageMaker::Model", "DependsOn": depends_on, "Properties": {"ModelDataSource": {"S3DataSource": {
        "S3Uri": {"Fn::Join": ["", ["s3://", {"Ref": "Bucket"}, "/models/m/0123/"]]}}}}}


def test_a_model_of_the_compiled_prefix_must_wait_for_the_compile():
    before = compile_stack("A")
    after = compile_stack("A")
    after["Resources"]["Model"] = model(["CompileJob"])
    assert check_pair(before, after) == ["Model (AWS::SageMaker::Model) serves models/m/0123/ but does not depend on WaitA: "
                                         "it would be created before the compile ends"]
    after["Resources"]["Model"] = model(["CompileJob", "WaitA"])
    assert check_pair(before, after) == []


def code_placement(depends_on, compile_wait):
    return {"Type": "Custom::NeuronxInferenceCode", "DependsOn": depends_on, "Properties": {
        "DestinationPrefix": "models/m/0123/code/", "MarkerKey": "models/m/0123/_COMPILED", "CompileWait": compile_wait}}


@pytest.mark.parametrize("depends_on, compile_wait", [
    (["CompileJob"], "WaitA"),  # could check the marker before the compile ends
    (["WaitA"], "WaitOld"),  # would not check again after a new wait
])
def test_the_marker_check_of_the_compiled_prefix_must_follow_its_wait(depends_on, compile_wait):
    before = compile_stack("A")
    after = compile_stack("A")
    after["Resources"]["Code"] = code_placement(depends_on, compile_wait)
    assert check_pair(before, after) == ["Code (Custom::NeuronxInferenceCode) checks the marker of models/m/0123/ but does not depend on "
                                         "WaitA and name it in CompileWait: the check could run before the compile ends, or not after a new wait"]
    after["Resources"]["Code"] = code_placement(["WaitA"], "WaitA")
    assert check_pair(before, after) == []


def test_an_unchanged_compile_keeps_its_wait():
    assert check_pair(compile_stack("A"), compile_stack("A")) == []


# --- rule 4: a launch template change must reach the compute environment

def launch_template_stack(volume_gib, version=None):
    spec = {"LaunchTemplateId": {"Ref": "LaunchTemplate"}}
    if version is not None:
        spec["Version"] = version
    return template(
        LaunchTemplate={"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
            "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": volume_gib}}]}}},
        Env=compute_environment(ComputeResources={"Type": "EC2", "LaunchTemplate": spec}),
    )


def test_a_changed_launch_template_without_a_pinned_version_is_a_fault():
    faults = check_pair(launch_template_stack(100), launch_template_stack(200))
    assert faults == ["Env (AWS::Batch::ComputeEnvironment) uses launch template LaunchTemplate, which changes, without pinning its "
                      "LatestVersionNumber (Version: null): the change never reaches it"]
    assert check_pair(launch_template_stack(100, "$Latest"), launch_template_stack(200, "$Latest")) != []


def test_a_changed_launch_template_pinned_to_its_latest_version_is_fine():
    latest = {"Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]}
    assert check_pair(launch_template_stack(100, latest), launch_template_stack(200, latest)) == []
    # Unpinned but unchanged: nothing to reach.
    assert check_pair(launch_template_stack(100), launch_template_stack(100)) == []


# --- the program

def write_pair(root, name, before, after):
    pair = root / name
    pair.mkdir()
    (pair / "before.template.json").write_text(json.dumps(before))
    (pair / "after.template.json").write_text(json.dumps(after))


def test_main_checks_both_directions_and_fails_on_a_fault(tmp_path, capsys):
    # Forward the prefix moves onto a new wait (fine); back, the old wait's ids come back with the old prefix, and
    # the check must still see each side's wait as its own (fine too). A timeout change on the same ids is not.
    write_pair(tmp_path, "prefix", compile_stack("A"), compile_stack("B", prefix="other-root/m/0123/"))
    write_pair(tmp_path, "timeout", compile_stack("A"), compile_stack("A", timeout="10800"))
    assert check_updates.main(["check_updates.py", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAULT prefix" not in out
    assert "FAULT timeout (forward): WaitA" in out
    assert "FAULT timeout (back): WaitA" in out
    assert "2 update pairs checked in both directions" in out


def test_main_passes_good_pairs_and_refuses_an_empty_dir(tmp_path):
    assert check_updates.main(["check_updates.py", str(tmp_path)]) == 2
    write_pair(tmp_path, "prefix", compile_stack("A"), compile_stack("B", prefix="other-root/m/0123/"))
    assert check_updates.main(["check_updates.py", str(tmp_path)]) == 0


# --- rule 5: a variant registered for autoscaling changes its instance type only on a new endpoint

def endpoint_stack(instance_type="ml.inf2.24xlarge", endpoint_id="Endpoint", autoscaled=True, model="ModelA", count=1,
                   variant="AllTraffic", download_timeout=1138):
    """An endpoint, its config and model, and (autoscaled) the scalable target of its variant, as the library renders them."""
    resources = {
        model: {"Type": "AWS::SageMaker::Model", "Properties": {"PrimaryContainer": {"Image": "image"}}},
        "EndpointConfig": {"Type": "AWS::SageMaker::EndpointConfig", "Properties": {"ProductionVariants": [{
            "VariantName": variant, "ModelName": {"Fn::GetAtt": [model, "ModelName"]}, "InstanceType": instance_type,
            "InitialInstanceCount": count, "InitialVariantWeight": 1, "ModelDataDownloadTimeoutInSeconds": download_timeout}]}},
        endpoint_id: {"Type": "AWS::SageMaker::Endpoint", "Properties": {
            "EndpointConfigName": {"Fn::GetAtt": ["EndpointConfig", "EndpointConfigName"]},
            **({"RetainAllVariantProperties": True} if autoscaled else {})}},
    }
    if autoscaled:
        resources["InstanceCountTarget"] = {"Type": "AWS::ApplicationAutoScaling::ScalableTarget", "Properties": {
            "ServiceNamespace": "sagemaker", "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "MinCapacity": 1, "MaxCapacity": 2,
            "ResourceId": {"Fn::Join": ["", ["endpoint/", {"Fn::GetAtt": [endpoint_id, "EndpointName"]}, "/variant/AllTraffic"]]}}}
    return template(**resources)


def test_an_autoscaled_variant_whose_instance_type_changes_in_place_is_a_fault():
    faults = check_pair(endpoint_stack("ml.inf2.24xlarge"), endpoint_stack("ml.inf2.48xlarge"))
    assert faults == ["Endpoint (AWS::SageMaker::Endpoint) has variant AllTraffic registered as scalable target InstanceCountTarget, and its "
                      "update changes its instance type (\"ml.inf2.24xlarge\" -> \"ml.inf2.48xlarge\") under the same logical id: SageMaker "
                      "refuses UpdateEndpoint until the variant is deregistered (developer guide, \"Update or delete endpoints that use auto scaling\")"]


def test_an_autoscaled_variant_that_is_dropped_is_a_fault():
    faults = check_pair(endpoint_stack(), endpoint_stack(variant="Other"))
    assert len(faults) == 1 and "its update drops the variant under the same logical id" in faults[0]


def test_turning_autoscaling_off_with_the_instance_type_is_still_a_fault():
    # The old target is deregistered only in the cleanup, after the endpoint's update.
    assert len(check_pair(endpoint_stack("ml.inf2.24xlarge"), endpoint_stack("ml.inf2.48xlarge", autoscaled=False))) == 1


@pytest.mark.parametrize("after", [
    endpoint_stack("ml.inf2.48xlarge", endpoint_id="EndpointB"),  # a new endpoint: the fix
    endpoint_stack(model="ModelB"),  # a new model: allowed in place
    endpoint_stack(download_timeout=1800),  # a timeout: not a change that needs deregistration
])
def test_a_new_endpoint_a_new_model_or_a_new_timeout_is_fine(after):
    assert check_pair(endpoint_stack(), after) == []


def test_an_instance_type_change_without_autoscaling_or_when_autoscaling_is_added_is_fine():
    assert check_pair(endpoint_stack("ml.inf2.24xlarge", autoscaled=False), endpoint_stack("ml.inf2.48xlarge", autoscaled=False)) == []
    assert check_pair(endpoint_stack("ml.inf2.24xlarge", autoscaled=False), endpoint_stack("ml.inf2.48xlarge")) == []


# --- rule 6: no blue/green deployment for a change that RetainAllVariantProperties undoes

def test_an_autoscaled_endpoint_whose_config_changes_only_its_initial_count_is_a_fault():
    faults = check_pair(endpoint_stack(count=1), endpoint_stack(count=3))
    assert faults == ["EndpointConfig (AWS::SageMaker::EndpointConfig) of Endpoint changes only variant properties that "
                      "RetainAllVariantProperties keeps (InitialInstanceCount, InitialVariantWeight): a new endpoint config and a "
                      "blue/green deployment that replaces every instance, for no change"]


def test_an_initial_count_change_with_another_change_or_without_retention_is_fine():
    assert check_pair(endpoint_stack(count=1), endpoint_stack(count=3, download_timeout=1800)) == []
    assert check_pair(endpoint_stack(count=1, autoscaled=False), endpoint_stack(count=3, autoscaled=False)) == []
