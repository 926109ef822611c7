package kube_intent.admission_test.accelerator_declared

import data.kube_intent.admission_test.fixtures as fx

declares_two := fx.with_intent({"accelerators": {"count": 2}})

mig := fx.with_workload({"accelerators": [{"container": "vllm", "containerType": "container", "resource": "nvidia.com/mig-1g.10gb", "count": 1}]})

test_fires_when_count_differs if {
	d := fx.decide(declares_two)
	v := fx.only(d, "accelerator-declared")
	v.enforcement == "deny"
	v.field == "intent.accelerators.count"
	v.message == "intent declares 2 accelerator(s) but the pod uses 1 (vllm: nvidia.com/gpu=1): set intent.accelerators.count to 1, or change the pod's resources"
	not d.allowed
}

test_count_is_compared_with_workload_total if {
	# total, not the sum of uses: an init container's GPU is reused by the main container.
	inp := object.union(fx.input_base, {"workload": {"accelerators": [
		{"container": "fetch-weights", "containerType": "initContainer", "resource": "nvidia.com/gpu", "count": 1},
		{"container": "vllm", "containerType": "container", "resource": "nvidia.com/gpu", "count": 1},
	]}})
	fx.findings(fx.decide(inp), "accelerator-declared") == []
}

test_fires_when_resource_differs if {
	d := fx.decide(mig)
	v := fx.only(d, "accelerator-declared")
	v.field == "intent.accelerators.resource"
	v.message == `intent declares accelerator resource "nvidia.com/gpu" but container "vllm" (spec.containers[0]) uses "nvidia.com/mig-1g.10gb": fix intent.accelerators.resource or the container's resources`
}

test_resource_is_optional if {
	inp := json.remove(mig, ["intent/accelerators/resource"])
	fx.findings(fx.decide(inp), "accelerator-declared") == []
}

test_claim_device_class_must_match_declared_resource if {
	inp := object.union(fx.input_base, {"workload": {"accelerators": [], "claims": [{
		"name": "gpu", "source": "resourceClaimName", "objectName": "gpu-claim",
		"deviceClasses": ["gpu.nvidia.com"], "count": 1, "accelerator": true, "resolved": true,
	}]}})
	v := fx.only(fx.decide(inp), "accelerator-declared")
	contains(v.message, `resource claim "gpu" (spec.resourceClaims[name=gpu]) uses device classes [gpu.nvidia.com]`)
	ok := object.union(inp, {"intent": {"accelerators": {"resource": "gpu.nvidia.com"}}})
	fx.findings(fx.decide(ok), "accelerator-declared") == []
}

test_unresolved_claim_is_named_unresolved_not_counted_silently if {
	inp := object.union(declares_two, {"workload": {"accelerators": [], "total": 1, "claims": [{
		"name": "gpus", "source": "resourceClaimTemplateName", "objectName": "two-gpus",
		"deviceClasses": [], "count": 1, "accelerator": true, "resolved": false,
	}]}})
	v := fx.only(fx.decide(inp), "accelerator-declared")
	v.message == `intent declares 2 accelerator(s) but the pod uses 1 (claim gpus: unresolved, counted as 1 (ResourceClaimTemplate "two-gpus" could not be read)): create the claim's ResourceClaim or ResourceClaimTemplate before the pod, so that its devices can be counted`
}

test_resolved_claim_summary_names_its_classes if {
	inp := object.union(declares_two, {"workload": {"accelerators": [], "total": 1, "claims": [{
		"name": "gpus", "source": "resourceClaimName", "objectName": "one-gpu",
		"deviceClasses": ["gpu.nvidia.com"], "count": 1, "accelerator": true, "resolved": true,
	}]}})
	v := fx.only(fx.decide(object.union(inp, {"intent": {"accelerators": {"resource": "gpu.nvidia.com"}}})), "accelerator-declared")
	contains(v.message, "(claim gpus: gpu.nvidia.com=1): set intent.accelerators.count to 1")
}

test_not_fired_when_declared_correctly if {
	fx.findings(fx.base_decision, "accelerator-declared") == []
}

test_fires_without_registration if {
	# Not a per-registration rule: the declaration is wrong whoever the agent is.
	inp := object.union(declares_two, {"identity": {"registration": null}})
	fx.only(fx.decide(inp), "accelerator-declared")
}

test_not_fired_without_intent if {
	fx.findings(fx.decide(fx.with_change({"intent": null})), "accelerator-declared") == []
}

test_enforcement_override if {
	d := fx.decide_enforced(declares_two, {"accelerator-declared": "warn"})
	fx.only(d, "accelerator-declared").enforcement == "warn"
	d.allowed
}
