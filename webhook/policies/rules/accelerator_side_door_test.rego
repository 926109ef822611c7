package kube_intent.admission_test.accelerator_side_door

import data.kube_intent.admission_test.fixtures as fx

# The base input, with the side doors the webhook reported for it.
with_doors(doors) := fx.with_workload({"sideDoors": doors})

env_door := {
	"kind": "env", "field": "spec.containers[0].env[0]", "container": "vllm",
	"name": "NVIDIA_VISIBLE_DEVICES", "value": "all",
}

host_path_door := {
	"kind": "hostPath", "field": "spec.volumes[0].hostPath.path", "container": null,
	"name": "dev", "value": "/dev",
}

privileged_door := {
	"kind": "privileged", "field": "spec.containers[1].securityContext.privileged",
	"container": "metrics", "name": null, "value": null,
}

runtime_class_door := {
	"kind": "runtimeClass", "field": "spec.runtimeClassName", "container": null,
	"name": "nvidia", "value": null,
}

annotation_door := {
	"kind": "annotation", "field": `metadata.annotations["cdi.k8s.io/gpu"]`, "container": null,
	"name": "cdi.k8s.io/gpu", "value": "nvidia.com/gpu=all",
}

remedy := "request the accelerator as a resource (e.g. nvidia.com/gpu: 1 in resources.limits) or a DRA claim and declare it in the intent instead"

test_env_side_door_is_denied_naming_the_field if {
	d := fx.decide(with_doors([env_door]))
	v := fx.only(d, "accelerator-side-door")
	v.enforcement == "deny"
	v.field == "spec.containers[0].env[0]"
	v.message == sprintf(`container "vllm" sets NVIDIA_VISIBLE_DEVICES=all, which makes the container runtime expose accelerator devices that were not allocated (and overrides those that were): remove it (the device plugin sets it for the devices it allocates) and %s`, [remedy])
	not d.allowed
	d.scopes == []
}

test_host_path_side_door if {
	v := fx.only(fx.decide(with_doors([host_path_door])), "accelerator-side-door")
	v.field == "spec.volumes[0].hostPath.path"
	v.message == sprintf(`volume "dev" mounts host path "/dev", which holds accelerator device nodes; device hostPath volumes are not allowed on governed pods: %s`, [remedy])
}

test_privileged_side_door if {
	v := fx.only(fx.decide(with_doors([privileged_door])), "accelerator-side-door")
	v.field == "spec.containers[1].securityContext.privileged"
	v.message == sprintf(`container "metrics" is privileged and so sees every device on the node, accelerators included; privileged containers are not allowed on governed pods: drop securityContext.privileged and %s`, [remedy])
}

test_runtime_class_side_door if {
	v := fx.only(fx.decide(with_doors([runtime_class_door])), "accelerator-side-door")
	v.field == "spec.runtimeClassName"
	v.message == sprintf(`runtimeClassName "nvidia" exposes accelerators but the pod allocates none, so the image decides which devices it sees: %s, or remove runtimeClassName`, [remedy])
}

test_annotation_side_door if {
	v := fx.only(fx.decide(with_doors([annotation_door])), "accelerator-side-door")
	v.field == `metadata.annotations["cdi.k8s.io/gpu"]`
	contains(v.message, `annotation "cdi.k8s.io/gpu" asks the container runtime for devices (nvidia.com/gpu=all)`)
}

test_one_finding_per_side_door if {
	d := fx.decide(with_doors([env_door, host_path_door, privileged_door]))
	[v.field | some v in fx.findings(d, "accelerator-side-door")] == [
		"spec.containers[0].env[0]",
		"spec.containers[1].securityContext.privileged",
		"spec.volumes[0].hostPath.path",
	]
}

test_fires_without_intent_or_registration if {
	# A privileged CPU pod has neither: it is refused for the side door itself.
	inp := object.union(with_doors([privileged_door]), {"intent": null, "identity": {"registration": null}})
	d := fx.decide(inp)
	count(fx.findings(d, "accelerator-side-door")) == 1
	not d.allowed
}

test_unknown_kind_and_missing_fields_still_deny if {
	v := fx.only(fx.decide(with_doors([{"kind": "future"}])), "accelerator-side-door")
	v.field == "spec"
	v.enforcement == "deny"
	startswith(v.message, "the pod reaches accelerator devices without allocating them (future)")
}

test_missing_texts_are_shown_as_question_marks if {
	v := fx.only(fx.decide(with_doors([{"kind": "env", "field": "spec.containers[0].env[3]"}])), "accelerator-side-door")
	startswith(v.message, `container "?" sets ?=?,`)
}

test_not_fired_without_side_doors if {
	fx.findings(fx.base_decision, "accelerator-side-door") == []
	fx.findings(fx.decide(with_doors([])), "accelerator-side-door") == []
	fx.findings(fx.decide(with_doors("none")), "accelerator-side-door") == []
	fx.findings(fx.decide(with_doors([1, "x", null])), "accelerator-side-door") == []
}

test_enforcement_override if {
	d := fx.decide_enforced(with_doors([runtime_class_door]), {"accelerator-side-door": "warn"})
	fx.only(d, "accelerator-side-door").enforcement == "warn"
	d.allowed
}
