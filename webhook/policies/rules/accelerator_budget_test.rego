package kube_intent.admission_test.accelerator_budget

import data.kube_intent.admission_test.fixtures as fx

# The pod really uses 3 GPUs and says so.
three_gpus := object.union(fx.input_base, {
	"workload": {
		"accelerators": [{"container": "vllm", "containerType": "container", "resource": "nvidia.com/gpu", "count": 3}],
		"total": 3,
	},
	"intent": {"accelerators": {"count": 3}},
})

# Container vllm uses an accelerator resource of another vendor.
amd := object.union(fx.input_base, {
	"workload": {"accelerators": [{"container": "vllm", "containerType": "container", "resource": "amd.com/gpu", "count": 1}]},
	"intent": {"accelerators": {"resource": "amd.com/gpu"}},
})

# A pod with one DRA claim, as the webhook reports it.
with_claim(claim) := object.union(fx.input_base, {
	"pod": {"spec": {"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}]}},
	"workload": {"accelerators": [], "claims": [claim], "total": 1},
	"intent": {"accelerators": {"count": 1}},
})

claim(classes) := {
	"name": "gpu", "source": "resourceClaimTemplateName", "objectName": "one-gpu",
	"deviceClasses": classes, "count": 1, "accelerator": true, "resolved": count(classes) > 0,
}

test_fires_over_budget if {
	d := fx.decide(three_gpus)
	v := fx.only(d, "accelerator-budget")
	v.enforcement == "deny"
	v.field == "spec.containers[0].resources"
	v.message == `pod uses 3 accelerator(s) (vllm: nvidia.com/gpu=3) but agent "summarizer" may use at most 2 (Agent spec.accelerators.max): request fewer, or ask an owner to raise the budget (owners: [alice@example.com])`
	fx.findings(d, "accelerator-declared") == []
	not d.allowed
}

test_not_fired_at_budget if {
	inp := object.union(three_gpus, {"workload": {"total": 2}, "intent": {"accelerators": {"count": 2}}})
	fx.findings(fx.decide(inp), "accelerator-budget") == []
}

test_unset_budget_is_zero if {
	inp := object.union(fx.input_base, {"identity": {"registration": {"accelerators": {"resources": []}}}})
	inp2 := json.remove(inp, ["identity/registration/accelerators/max"])
	contains(fx.only(fx.decide(inp2), "accelerator-budget").message, "may use at most 0")
}

test_several_sources_point_at_spec if {
	inp := object.union(three_gpus, {"workload": {"accelerators": [
		{"container": "vllm", "containerType": "container", "resource": "nvidia.com/gpu", "count": 2},
		{"container": "fetch-weights", "containerType": "initContainer", "resource": "nvidia.com/gpu", "count": 1},
	]}})
	v := fx.only(fx.decide(inp), "accelerator-budget")
	v.field == "spec"
	contains(v.message, "(vllm: nvidia.com/gpu=2, fetch-weights: nvidia.com/gpu=1)")
}

test_fires_for_resource_not_registered if {
	d := fx.decide(amd)
	v := fx.only(d, "accelerator-budget")
	v.field == "spec.containers[0].resources"
	v.message == `container "vllm" uses accelerator resource "amd.com/gpu", but agent "summarizer" may only use [nvidia.com/gpu, nvidia.com/mig-*] (Agent spec.accelerators.resources)`
	not d.allowed
}

test_resource_in_init_container_points_at_it if {
	inp := object.union(amd, {"workload": {"accelerators": [{"container": "fetch-weights", "containerType": "initContainer", "resource": "amd.com/gpu", "count": 1}]}})
	fx.only(fx.decide(inp), "accelerator-budget").field == "spec.initContainers[0].resources"
}

test_resource_patterns_are_globs if {
	inp := object.union(fx.input_base, {
		"workload": {"accelerators": [{"container": "vllm", "containerType": "container", "resource": "nvidia.com/mig-1g.10gb", "count": 1}]},
		"intent": {"accelerators": {"resource": "nvidia.com/mig-1g.10gb"}},
	})
	fx.findings(fx.decide(inp), "accelerator-budget") == []
}

test_no_resource_restriction_when_list_empty if {
	inp := object.union(amd, {"identity": {"registration": {"accelerators": {"resources": []}}}})
	fx.findings(fx.decide(inp), "accelerator-budget") == []
}

test_fires_for_claim_device_class_not_registered if {
	d := fx.decide(with_claim(claim(["gpu.amd.com"])))
	v := fx.only(d, "accelerator-budget")
	v.field == "spec.resourceClaims[0]"
	v.message == `resource claim "gpu" uses device class "gpu.amd.com", but agent "summarizer" may only use [nvidia.com/gpu, nvidia.com/mig-*] (Agent spec.accelerators.resources)`
}

test_not_fired_for_registered_claim_device_class if {
	inp := object.union(with_claim(claim(["gpu.nvidia.com"])), {"identity": {"registration": {"accelerators": {"resources": ["gpu.nvidia.com"]}}}})
	fx.findings(fx.decide(inp), "accelerator-budget") == []
}

test_fires_for_unresolved_claim if {
	v := fx.only(fx.decide(with_claim(claim([]))), "accelerator-budget")
	v.field == "spec.resourceClaims[0]"
	contains(v.message, `resource claim "gpu" could not be resolved (does its ResourceClaim or ResourceClaimTemplate "one-gpu" exist?)`)
}

test_not_fired_without_registration if {
	inp := object.union(three_gpus, {"identity": {"registration": null}})
	fx.findings(fx.decide(inp), "accelerator-budget") == []
}

test_not_fired_without_intent if {
	inp := object.union(three_gpus, {"intent": null})
	fx.findings(fx.decide(inp), "accelerator-budget") == []
}

test_enforcement_override if {
	d := fx.decide_enforced(three_gpus, {"accelerator-budget": "warn"})
	fx.only(d, "accelerator-budget").enforcement == "warn"
	d.allowed
}

test_fires_for_a_claim_of_every_device_on_the_node if {
	inp := object.union(with_claim(object.union(claim(["gpu.nvidia.com"]), {"allDevices": true})), {"identity": {"registration": {"accelerators": {"resources": ["gpu.nvidia.com"]}}}})
	v := fx.only(fx.decide(inp), "accelerator-budget")
	v.field == "spec.resourceClaims[0]"
	contains(v.message, `claim "gpu" asks for allocationMode All`)
}

test_not_fired_for_an_exact_count_claim if {
	inp := object.union(with_claim(object.union(claim(["gpu.nvidia.com"]), {"allDevices": false})), {"identity": {"registration": {"accelerators": {"resources": ["gpu.nvidia.com"]}}}})
	fx.findings(fx.decide(inp), "accelerator-budget") == []
}

# spec.accelerators that is not an object sets no budget: 0, like an unset one.
test_mistyped_accelerators_is_a_zero_budget if {
	inp := fx.with_registration({"accelerators": ["nvidia.com/gpu"]})
	v := fx.only(fx.decide(inp), "accelerator-budget")
	contains(v.message, "may use at most 0")
}
