package kube_intent.admission_test.lib

import data.kube_intent.admission
import data.kube_intent.admission_test.fixtures as fx

# Input views fall back sensibly when the webhook leaves identity fields out.

test_namespace_falls_back_to_request_then_pod if {
	admission.namespace == "team-b" with input as {"request": {"namespace": "team-b"}, "pod": {"metadata": {"namespace": "team-c"}}}
	admission.namespace == "team-c" with input as {"pod": {"metadata": {"namespace": "team-c"}}}
	admission.namespace == "" with input as {}
}

test_service_account_falls_back_to_pod_then_default if {
	admission.service_account == "runner" with input as {"pod": {"spec": {"serviceAccountName": "runner"}}}
	admission.service_account == "default" with input as {}
}

test_serviceaccount_bound_uses_pod_spec_without_identity_sa if {
	inp := object.union(json.remove(fx.input_base, ["identity/serviceAccount"]), {"pod": {"spec": {"serviceAccountName": "default"}}})
	fx.only(fx.decide(inp), "serviceaccount-bound")
}

test_container_path_falls_back_to_name if {
	admission.container_path({"container": "ghost", "containerType": "container"}) == "spec.containers[name=ghost]" with input as fx.input_base
	admission.container_path({"container": "vllm", "containerType": "container"}) == "spec.containers[0]" with input as fx.input_base
	admission.container_path({"container": "fetch-weights", "containerType": "initContainer"}) == "spec.initContainers[0]" with input as fx.input_base
}

test_upper_case_first_component_is_a_registry if {
	# Docker: repository paths are lower case, so "MyRegistry/x" names a host.
	admission.normalize_image("MyRegistry/x") == "myregistry/x"
}

test_suspended_message_without_owners if {
	inp := fx.with_registration({"suspended": true, "owners": []})
	endswith(fx.only(fx.decide(inp), "agent-suspended").message, "until an owner resumes it")
}

test_mistyped_justification_level_uses_default if {
	inp := fx.with_intent({"dataClasses": ["confidential"]})
	d := fx.decide_config(inp, {"justification_min_level": "high"})
	fx.only(d, "justification-required")
}

test_effective_enforcement if {
	admission.effective_enforcement("image-registry", "deny") == "warn" with data.kube_intent.config.enforcement as {"image-registry": "warn"}
	admission.effective_enforcement("image-registry", "deny") == "deny" with data.kube_intent.config.enforcement as {"image-registry": "off"}
	admission.effective_enforcement("x", "bogus") == "deny" with data.kube_intent.config.enforcement as {}
}

test_fmt_list if {
	admission.fmt_list([]) == "[] (none)"
	admission.fmt_list(["a", 1]) == "[a, 1]"
}
