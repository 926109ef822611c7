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

# The config views take a fast path when the operator's config is already in normal
# form; the slow path must give what the merge and the filters always gave.

test_config_merges_partial_operator_config if {
	cfg := admission.config with data.kube_intent.config as {"allowed_registries": ["nvcr.io/"], "unknown": 1}
	cfg == object.union(admission.default_config, {"allowed_registries": ["nvcr.io/"]})
	cfg_full := admission.config with data.kube_intent.config as fx.config
	cfg_full == fx.config
}

test_config_replaces_tables_without_merging if {
	levels := admission.config.data_class_levels with data.kube_intent.config as {"data_class_levels": {"pii": 4}}
	levels == {"pii": 4}
}

test_allowed_registries_normal_form if {
	admission.allowed_registries == ["nvcr.io/", "ghcr.io/"] with data.kube_intent.config as {"allowed_registries": ["nvcr.io/", "ghcr.io/"]}
	regs := admission.allowed_registries with data.kube_intent.config as {"allowed_registries": ["nvcr.io", "", 5, "ghcr.io/", "a//"]}
	regs == ["nvcr.io/", "ghcr.io/", "a//"]
	admission.allowed_registries == ["nvcr.io/"] with data.kube_intent.config as {"allowed_registries": {"a": "nvcr.io/"}}
}

test_data_class_levels_keep_only_numbers if {
	admission.data_class_levels == {"public": 0, "pii": 4} with data.kube_intent.config as {"data_class_levels": {"public": 0, "pii": 4}}
	admission.data_class_levels == {"public": 0} with data.kube_intent.config as {"data_class_levels": {"public": 0, "secret": "high"}}
}

test_registration_accelerators if {
	admission.registration_accelerators == fx.registration.accelerators with input as fx.input_base
	admission.registration_accelerators == {} with input as fx.with_registration({"accelerators": ["nvidia.com/gpu"]})
	admission.registration_accelerators == {} with input as {}
}
