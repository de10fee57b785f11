"""Checks pairs of CloudFormation templates, each an update from one synthesized app to another, against what
CloudFormation can do with them (its resource schemas, as cfn-lint ships them):

1. A resource whose physical name the template fixes (a literal name property) may not change a create-only
   property under the same logical id: CloudFormation would replace it, and the replacement fails because the
   old resource still holds the name.
2. An AWS::CloudFormation::WaitCondition or WaitConditionHandle may not change at all under the same logical id:
   CloudFormation cannot update one (its Count, Handle and Timeout say "Updates aren't supported").
3. A Custom::NeuronxCompileJob whose artifact location (ArtifactBucket, ArtifactPrefix) or whose wait's properties
   change must wait on a NEW WaitCondition with a NEW handle (an old handle may hold an earlier deploy's signal),
   and its WaitHandleUrl must be that handle; a SageMaker model that serves its prefix must depend on that
   WaitCondition (or it would be created before the artifacts exist), and so must the Custom::NeuronxInferenceCode
   that checks the prefix's completion marker, naming it in CompileWait (or the check could run before the wait
   ends, or not run again after a new wait, and a forged SUCCESS would make a model over incomplete artifacts).
4. A change CloudFormation accepts but that never reaches the running resource: a launch template whose data
   changes (a new version) must be referenced with its `LatestVersionNumber`. Without a version a Batch compute
   environment keeps the version it read when it was created, and its own properties do not change, so
   CloudFormation never updates it (AWS Batch API reference, LaunchTemplateSpecification).
5. An AWS::SageMaker::Endpoint whose variant is registered as an Application Auto Scaling scalable target (before
   the update: CloudFormation deregisters a removed target only in the cleanup, after the endpoint's update) may not
   be updated under the same logical id to an endpoint config that changes that variant's instance type or drops
   the variant. SageMaker developer guide, "Update or delete endpoints that use auto scaling"
   (https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-scaling.html): "If the update would change the instance
   type for any model that is a target for auto scaling, the update fails"; the target must first be deregistered
   when "changing the instance type of a production variant" or "removing a production variant" that has auto
   scaling; "If you change the model for a variant that is configured for auto scaling, Amazon SageMaker auto
   scaling allows the update". Other variant settings (timeouts, volume) are not named as needing it.
6. An update that costs a blue/green deployment and changes nothing: an endpoint that keeps its variant properties
   across updates (RetainAllVariantProperties, which the library sets with autoscaling) gets a new endpoint config
   (every EndpointConfig property is create-only: CloudFormation makes a new one, and UpdateEndpoint replaces every
   instance) whose only differences are the variant properties it retains, the instance count and weight
   (UpdateEndpoint API reference, RetainAllVariantProperties: "the retention of variant properties, such as the
   instance count or the variant weight").

    check_updates.py <pairs dir>

Each subdirectory of <pairs dir> is one pair: before.template.json and after.template.json. Every pair is checked in
both directions (going back is an update too). Exit 0: no fault; 1: faults (each listed); 2: nothing to check.
"""

import json
import pathlib
import sys

from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

COMPILE_JOB_TYPE = "Custom::NeuronxCompileJob"
INFERENCE_CODE_TYPE = "Custom::NeuronxInferenceCode"
WAIT_TYPES = ("AWS::CloudFormation::WaitCondition", "AWS::CloudFormation::WaitConditionHandle")
# The schemas are the same for the resource types these templates use in every commercial region.
SCHEMA_REGION = "us-east-1"
# Values CloudFormation fills in per stack, the same on both sides of an update.
PSEUDO_PARAMETERS = {"AWS::AccountId", "AWS::Partition", "AWS::Region", "AWS::StackName", "AWS::StackId", "AWS::URLSuffix"}


def _schema(type_name):
    if not type_name.startswith("AWS::"):
        return None  # custom resources have no schema
    return PROVIDER_SCHEMA_MANAGER.get_resource_schema(SCHEMA_REGION, type_name).schema


def create_only_paths(type_name):
    """The create-only properties of a type, each as a list of keys below Properties."""
    schema = _schema(type_name) or {}
    return [p.split("/")[2:] for p in schema.get("createOnlyProperties", [])]


def name_properties(type_name):
    """The create-only properties that name the resource: `Name`, or `<X>Name` where the type's name ends with X
    (BucketName, RoleName, LogGroupName, ComputeEnvironmentName, the security group's GroupName), not the name of
    another resource it points to (a Lambda permission's FunctionName)."""
    kind = type_name.split("::")[-1]
    names = []
    for path in create_only_paths(type_name):
        if len(path) != 1 or not path[0].endswith("Name"):
            continue
        stem = path[0][: -len("Name")]
        if stem == "" or kind.endswith(stem):
            names.append(path[0])
    return names


def is_fixed(value, template):
    """Whether a value is the same literal in every deploy of the template: a string, or a join or substitution of
    literals and pseudo parameters. A Ref or GetAtt of a resource is not fixed (a replacement gets a new one)."""
    if isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, list):
        return all(is_fixed(v, template) for v in value)
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Ref":
            return arg in PSEUDO_PARAMETERS or arg in template.get("Parameters", {})
        if fn == "Fn::Sub":
            text = arg if isinstance(arg, str) else arg[0]
            variables = {} if isinstance(arg, str) else arg[1]
            refs = [part.split("}")[0] for part in text.split("${")[1:]]
            return all(r in PSEUDO_PARAMETERS or r in template.get("Parameters", {}) or (r in variables and is_fixed(variables[r], template))
                       for r in refs)
        if fn in ("Fn::Join", "Fn::Select", "Fn::FindInMap"):
            return is_fixed(arg, template)
    return False


def value_at(properties, path):
    """The value at a path of keys ('*' for every item of a list), or None where it is absent."""
    if not path:
        return properties
    if isinstance(properties, list):
        return [value_at(item, path if path[0] != "*" else path[1:]) for item in properties]
    if not isinstance(properties, dict):
        return None
    return value_at(properties.get(path[0]), path[1:])


def _resources(template):
    return template.get("Resources", {})


def replaced_named_resources(before, after):
    """Rule 1."""
    faults = []
    for logical_id, new in _resources(after).items():
        old = _resources(before).get(logical_id)
        if not old or old.get("Type") != new.get("Type"):
            continue
        old_props, new_props = old.get("Properties", {}), new.get("Properties", {})
        fixed_names = [n for n in name_properties(new["Type"])
                       if n in new_props and is_fixed(new_props[n], after) and old_props.get(n) == new_props[n]]
        if not fixed_names:
            continue
        for path in create_only_paths(new["Type"]):
            if value_at(old_props, path) != value_at(new_props, path):
                faults.append(f"{logical_id} ({new['Type']}) changes create-only {'/'.join(path)} under the fixed name "
                              f"{fixed_names[0]}={json.dumps(new_props[fixed_names[0]])}: its replacement fails, the name is taken")
    return faults


def changed_waits(before, after):
    """Rule 2."""
    faults = []
    for logical_id, new in _resources(after).items():
        old = _resources(before).get(logical_id)
        if new.get("Type") in WAIT_TYPES and old and old.get("Properties", {}) != new.get("Properties", {}):
            faults.append(f"{logical_id} ({new['Type']}) changes under the same logical id "
                          f"({json.dumps(old.get('Properties', {}))} -> {json.dumps(new.get('Properties', {}))}): "
                          "CloudFormation cannot update a wait condition")
    return faults


def _wait_of(template, handle_url):
    """The handle a WaitHandleUrl refers to and the WaitCondition on that handle, as (handle id, wait id, wait)."""
    handle_id = handle_url.get("Ref") if isinstance(handle_url, dict) else None
    resources = _resources(template)
    if resources.get(handle_id, {}).get("Type") != "AWS::CloudFormation::WaitConditionHandle":
        return None
    for wait_id, wait in resources.items():
        if wait.get("Type") == "AWS::CloudFormation::WaitCondition" and wait.get("Properties", {}).get("Handle") == {"Ref": handle_id}:
            return handle_id, wait_id, wait
    return None


def _wait_settings(wait):
    return {k: v for k, v in wait.get("Properties", {}).items() if k != "Handle"}


def _models_not_waiting(template, prefix, wait_id):
    faults = []
    for logical_id, model in _resources(template).items():
        if model.get("Type") != "AWS::SageMaker::Model" or not isinstance(prefix, str):
            continue
        serves = prefix in json.dumps(model.get("Properties", {}).get("ModelDataSource", model.get("Properties", {}).get("PrimaryContainer", {})))
        depends = model.get("DependsOn", [])
        if serves and wait_id not in (depends if isinstance(depends, list) else [depends]):
            faults.append(f"{logical_id} (AWS::SageMaker::Model) serves {prefix} but does not depend on {wait_id}: "
                          "it would be created before the compile ends")
    return faults


def _marker_checks_not_waiting(template, prefix, wait_id):
    faults = []
    for logical_id, placement in _resources(template).items():
        marker = placement.get("Properties", {}).get("MarkerKey")
        if placement.get("Type") != INFERENCE_CODE_TYPE or not isinstance(prefix, str) or not isinstance(marker, str) or not marker.startswith(prefix):
            continue
        depends = placement.get("DependsOn", [])
        if wait_id not in (depends if isinstance(depends, list) else [depends]) or placement["Properties"].get("CompileWait") != wait_id:
            faults.append(f"{logical_id} ({INFERENCE_CODE_TYPE}) checks the marker of {prefix} but does not depend on {wait_id} "
                          "and name it in CompileWait: the check could run before the compile ends, or not after a new wait")
    return faults


def unwaited_compiles(before, after):
    """Rule 3."""
    faults = []
    for logical_id, new in _resources(after).items():
        if new.get("Type") != COMPILE_JOB_TYPE:
            continue
        props = new.get("Properties", {})
        found = _wait_of(after, props.get("WaitHandleUrl"))
        if not found:
            faults.append(f"{logical_id} ({COMPILE_JOB_TYPE}): WaitHandleUrl {json.dumps(props.get('WaitHandleUrl'))} is not the handle of a WaitCondition")
            continue
        handle_id, wait_id, wait = found
        faults += _models_not_waiting(after, props.get("ArtifactPrefix"), wait_id)
        faults += _marker_checks_not_waiting(after, props.get("ArtifactPrefix"), wait_id)
        old = _resources(before).get(logical_id, {})
        old_props = old.get("Properties", {})
        old_found = _wait_of(before, old_props.get("WaitHandleUrl")) if old else None
        reasons = [k for k in ("ArtifactBucket", "ArtifactPrefix") if old_props.get(k) != props.get(k)]
        if old_found is None or _wait_settings(old_found[2]) != _wait_settings(wait):
            reasons.append("the wait's properties")
        if not reasons:
            continue
        reused = [i for i in (handle_id, wait_id) if i in _resources(before)]
        if reused:
            faults.append(f"{logical_id} ({COMPILE_JOB_TYPE}) changes {', '.join(reasons)} but waits on "
                          f"{' and '.join(reused)} of the previous deploy: it needs a new WaitCondition and a new handle")
    return faults


def _launch_template_references(value):
    """Every launch template specification in a value: a dict that names a template by LaunchTemplateId/Name."""
    if isinstance(value, list):
        for item in value:
            yield from _launch_template_references(item)
    elif isinstance(value, dict):
        if "LaunchTemplateId" in value or "LaunchTemplateName" in value:
            yield value
        for item in value.values():
            yield from _launch_template_references(item)


def _referenced_resource(value):
    """The logical id a Ref or GetAtt names, else None."""
    if isinstance(value, dict) and "Ref" in value:
        return value["Ref"]
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return value["Fn::GetAtt"][0]
    return None


def unpinned_launch_templates(before, after):
    """Rule 4."""
    faults = []
    changed = {logical_id for logical_id, new in _resources(after).items()
               if new.get("Type") == "AWS::EC2::LaunchTemplate" and logical_id in _resources(before)
               and _resources(before)[logical_id].get("Properties") != new.get("Properties")}
    for logical_id, resource in _resources(after).items():
        for spec in _launch_template_references(resource.get("Properties", {})):
            template_id = _referenced_resource(spec.get("LaunchTemplateId") or spec.get("LaunchTemplateName"))
            if template_id in changed and spec.get("Version") != {"Fn::GetAtt": [template_id, "LatestVersionNumber"]}:
                faults.append(f"{logical_id} ({resource['Type']}) uses launch template {template_id}, which changes, without pinning "
                              f"its LatestVersionNumber (Version: {json.dumps(spec.get('Version'))}): the change never reaches it")
    return faults


SCALABLE_TARGET_TYPE = "AWS::ApplicationAutoScaling::ScalableTarget"
VARIANT_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def _rendered(value):
    """A Join of literals and GetAtts as one string, each GetAtt as `${Id.Attribute}`; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        return "${%s.%s}" % (logical_id, attribute)
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        rendered = [_rendered(p) for p in parts]
        return None if None in rendered else separator.join(rendered)
    return None


def registered_variants(template):
    """(endpoint logical id, variant name, scalable target id) of every variant registered as a scalable target, from
    the target's ResourceId `endpoint/<EndpointName>/variant/<VariantName>` (Application Auto Scaling API reference,
    RegisterScalableTarget ResourceId)."""
    found = []
    for logical_id, target in _resources(template).items():
        props = target.get("Properties", {})
        if target.get("Type") != SCALABLE_TARGET_TYPE or props.get("ScalableDimension") != VARIANT_DIMENSION:
            continue
        resource_id = _rendered(props.get("ResourceId")) or ""
        head, _, variant = resource_id.partition("/variant/")
        if head.startswith("endpoint/${") and head.endswith(".EndpointName}") and variant:
            found.append((head[len("endpoint/${"):-len(".EndpointName}")], variant, logical_id))
    return found


def _variants_of(template, endpoint):
    """The production variants, by name, of the endpoint config an endpoint names (None if not found in the template)."""
    config_ref = endpoint.get("Properties", {}).get("EndpointConfigName")
    config_id = _referenced_resource(config_ref)
    config = _resources(template).get(config_id)
    if not config or config.get("Type") != "AWS::SageMaker::EndpointConfig":
        return None
    return {v.get("VariantName"): v for v in config.get("Properties", {}).get("ProductionVariants", [])}


def autoscaled_variant_changes(before, after):
    """Rule 5."""
    faults = []
    for endpoint_id, variant, target_id in registered_variants(before):
        old, new = _resources(before).get(endpoint_id), _resources(after).get(endpoint_id)
        if not old or not new or new.get("Type") != "AWS::SageMaker::Endpoint":
            continue
        old_variants, new_variants = _variants_of(before, old), _variants_of(after, new)
        if old_variants is None or new_variants is None or variant not in old_variants:
            continue
        if variant not in new_variants:
            change = "drops the variant"
        elif old_variants[variant].get("InstanceType") != new_variants[variant].get("InstanceType"):
            change = (f"changes its instance type ({json.dumps(old_variants[variant].get('InstanceType'))} -> "
                      f"{json.dumps(new_variants[variant].get('InstanceType'))})")
        else:
            continue
        faults.append(f"{endpoint_id} (AWS::SageMaker::Endpoint) has variant {variant} registered as scalable target {target_id}, "
                      f"and its update {change} under the same logical id: SageMaker refuses UpdateEndpoint until the variant is "
                      "deregistered (developer guide, \"Update or delete endpoints that use auto scaling\")")
    return faults


# What RetainAllVariantProperties keeps from the running endpoint (UpdateEndpoint API reference).
RETAINED_VARIANT_PROPERTIES = ("InitialInstanceCount", "InitialVariantWeight")


def _without_retained(variants):
    return {name: {k: v for k, v in variant.items() if k not in RETAINED_VARIANT_PROPERTIES} for name, variant in variants.items()}


def retained_only_config_changes(before, after):
    """Rule 6."""
    faults = []
    for endpoint_id, new in _resources(after).items():
        old = _resources(before).get(endpoint_id)
        if new.get("Type") != "AWS::SageMaker::Endpoint" or not old or new.get("Properties", {}).get("RetainAllVariantProperties") is not True:
            continue
        config_id = _referenced_resource(new.get("Properties", {}).get("EndpointConfigName"))
        old_config, new_config = _resources(before).get(config_id), _resources(after).get(config_id)
        if not old_config or not new_config or old_config.get("Properties") == new_config.get("Properties"):
            continue
        old_props = {k: v for k, v in old_config.get("Properties", {}).items() if k != "ProductionVariants"}
        new_props = {k: v for k, v in new_config.get("Properties", {}).items() if k != "ProductionVariants"}
        old_variants, new_variants = _variants_of(before, old), _variants_of(after, new)
        if old_props == new_props and old_variants is not None and _without_retained(old_variants) == _without_retained(new_variants):
            faults.append(f"{config_id} (AWS::SageMaker::EndpointConfig) of {endpoint_id} changes only variant properties that "
                          f"RetainAllVariantProperties keeps ({', '.join(RETAINED_VARIANT_PROPERTIES)}): a new endpoint config and a "
                          "blue/green deployment that replaces every instance, for no change")
    return faults


def check_pair(before, after):
    """Every fault of the update from `before` to `after`."""
    return (replaced_named_resources(before, after) + changed_waits(before, after) + unwaited_compiles(before, after)
            + unpinned_launch_templates(before, after) + autoscaled_variant_changes(before, after)
            + retained_only_config_changes(before, after))


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    pairs = sorted(p for p in pathlib.Path(argv[1]).iterdir() if p.is_dir())
    if not pairs:
        print(f"no pairs under {argv[1]}", file=sys.stderr)
        return 2
    faults = 0
    for pair in pairs:
        before = json.loads((pair / "before.template.json").read_text())
        after = json.loads((pair / "after.template.json").read_text())
        if not _resources(before) or not _resources(after):
            print(f"{pair.name}: a template without resources", file=sys.stderr)
            return 2
        for direction, (a, b) in (("forward", (before, after)), ("back", (after, before))):
            for fault in check_pair(a, b):
                faults += 1
                print(f"FAULT {pair.name} ({direction}): {fault}")
    print(f"{len(pairs)} update pairs checked in both directions: {faults} faults")
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
