package kube_intent.admission_test.decision

import data.kube_intent.admission
import data.kube_intent.admission_test.fixtures as fx

# --- the allowed baseline --------------------------------------------------------

test_base_input_is_allowed_without_findings if {
	fx.base_decision == {
		"allowed": true,
		"violations": [],
		"scopes": [
			"data:internal:read",
			"data:public:read",
			"egress:api.example.com:443",
			"model:meta/llama-3.1-8b-instruct:infer",
			"tool:vector-search:invoke",
		],
		"grant_ttl_seconds": 600,
	}
}

test_base_input_is_allowed_with_shipped_data if {
	# Same answer with policies/data.json as loaded by `opa test policies/`.
	d := admission.decision with input as fx.input_base
	d.allowed
	d.violations == []
}

# --- totality -----------------------------------------------------------------------

decision_shape_ok(d) if {
	is_boolean(d.allowed)
	is_array(d.violations)
	is_array(d.scopes)
	is_number(d.grant_ttl_seconds)
	count(object.keys(d)) == 4
	every v in d.violations {
		object.keys(v) == {"rule", "field", "message", "enforcement"}
		v.enforcement in {"deny", "warn", "dryrun"}
	}
}

test_decision_defined_for_empty_input if {
	d := fx.decide({})
	decision_shape_ok(d)
	not d.allowed
	fx.rules_of(d) == {"intent-required", "agent-required"}
	d.scopes == []
	d.grant_ttl_seconds == 900
}

test_decision_defined_without_data if {
	d := admission.decision with input as {} with data.kube_intent.config as null
	decision_shape_ok(d)
	d.grant_ttl_seconds == 900
}

test_decision_defined_for_mistyped_input if {
	d := fx.decide({"request": 1, "pod": "x", "workload": [], "identity": true, "intent": "y"})
	decision_shape_ok(d)
	not d.allowed
}

test_decision_defined_for_mistyped_fields if {
	inp := object.union(fx.input_base, {
		"workload": {"accelerators": [1, {"container": 2}], "claims": "none", "total": "3"},
		"identity": {"registration": {"models": "all", "accelerators": 7, "maxGrantTTLSeconds": "1h"}, "registeredIn": "team-a"},
		"intent": {"models": [1], "ttlSeconds": "600", "accelerators": []},
		"pod": {"spec": {"containers": [{"name": "vllm", "image": 5}], "initContainers": {}}},
	})
	d := fx.decide(inp)
	decision_shape_ok(d)
	not d.allowed # fails closed
}

test_decision_defined_for_mistyped_config if {
	d := fx.decide_config(fx.input_base, {
		"allowed_registries": "nvcr.io/",
		"data_class_levels": [],
		"max_grant_ttl_seconds": "1h",
		"default_grant_ttl_seconds": -5,
		"enforcement": [],
	})
	decision_shape_ok(d)
	not d.allowed
	d.grant_ttl_seconds == 600 # only the Agent's cap (1800 s) remains
}

# --- violations ------------------------------------------------------------------------

everything_wrong := object.union(fx.input_base, {
	"pod": {"spec": {"containers": [{"name": "vllm", "image": "busybox"}, {"name": "b", "image": "alpine"}]}},
	"identity": {"serviceAccount": "default"},
	"intent": {
		"models": ["openai/gpt-4o", "meta/llama-3.1-8b/x"],
		"dataClasses": ["restricted"],
		"tools": ["shell"],
		"egress": ["evil.example.net"],
		"accelerators": {"count": 2},
		"ttl": "3h",
		"ttlSeconds": 10800,
	},
})

test_violations_sorted_by_rule_then_field if {
	d := fx.decide(everything_wrong)
	keys := [[v.rule, v.field] | some v in d.violations]
	keys == sort(keys)
	keys == [
		["accelerator-declared", "intent.accelerators.count"],
		["data-class-clearance", "intent.dataClasses[0]"],
		["egress-allowed", "intent.egress[0]"],
		["grant-ttl-cap", "intent.ttl"],
		["image-digest-pinned", "spec.containers[0].image"],
		["image-digest-pinned", "spec.containers[1].image"],
		["image-registry", "spec.containers[0].image"],
		["image-registry", "spec.containers[1].image"],
		["justification-required", "intent.justification"],
		["model-allowed", "intent.models[0]"],
		["model-allowed", "intent.models[1]"],
		["serviceaccount-bound", "spec.serviceAccountName"],
		["tools-allowed", "intent.tools[0]"],
	]
}

test_every_finding_names_a_catalogued_rule if {
	d := fx.decide(everything_wrong)
	every v in d.violations {
		admission.rule_catalog[v.rule]
		v.enforcement == admission.rule_catalog[v.rule].enforcement
	}
}

test_allowed_iff_no_effective_deny if {
	d := fx.decide_enforced(everything_wrong, {rule: "warn" |
		some rule, entry in admission.rule_catalog
		entry.enforcement == "deny"
	})
	d.allowed
	count(d.violations) == 13
	not "deny" in {v.enforcement | some v in d.violations}
}

test_override_can_tighten_a_warning if {
	inp := fx.with_intent({"ttl": "3h", "ttlSeconds": 10800})
	fx.decide(inp).allowed
	not fx.decide_enforced(inp, {"grant-ttl-cap": "deny"}).allowed
}

test_shipped_enforcement_overrides_apply if {
	# The override path the operator uses: data.json's enforcement object.
	inp := json.patch(fx.input_base, [{"op": "replace", "path": "/pod/spec/containers/1/image", "value": "busybox"}])
	d := admission.decision with input as inp with data.kube_intent.config.enforcement as {"image-registry": "dryrun"}
	d.allowed
	fx.only(d, "image-registry").enforcement == "dryrun"
}

# --- the rule catalogue ------------------------------------------------------------------

test_rule_catalog if {
	{id: entry.enforcement | some id, entry in admission.rule_catalog} == {
		"intent-required": "deny",
		"agent-required": "deny",
		"agent-registered": "deny",
		"serviceaccount-bound": "deny",
		"agent-suspended": "deny",
		"model-allowed": "deny",
		"data-class-clearance": "deny",
		"tools-allowed": "deny",
		"egress-allowed": "deny",
		"accelerator-budget": "deny",
		"accelerator-declared": "deny",
		"accelerator-side-door": "deny",
		"grant-ttl-cap": "warn",
		"image-registry": "deny",
		"justification-required": "warn",
		"image-digest-pinned": "dryrun",
		"intent-wellformed": "deny",
		"policy-config": "warn",
	}
	every _, entry in admission.rule_catalog {
		is_string(entry.summary)
	}
}

test_uncatalogued_rule_defaults_to_deny if {
	admission.default_enforcement("no-such-rule") == "deny"
}

# --- scopes ---------------------------------------------------------------------------------

test_scopes_are_sorted_and_deduplicated if {
	inp := fx.with_intent({
		"models": ["mistralai/mistral-7b", "meta/llama-3.1-8b-instruct"],
		"dataClasses": ["public"],
		"tools": ["web-fetch", "vector-search"],
		"egress": ["b.s3.amazonaws.com:443", "api.example.com"],
	})
	fx.decide(inp).scopes == [
		"data:public:read",
		"egress:api.example.com",
		"egress:b.s3.amazonaws.com:443",
		"model:meta/llama-3.1-8b-instruct:infer",
		"model:mistralai/mistral-7b:infer",
		"tool:vector-search:invoke",
		"tool:web-fetch:invoke",
	]
}

test_scopes_without_tools_or_egress if {
	inp := json.remove(fx.input_base, ["intent/tools", "intent/egress"])
	fx.decide(inp).scopes == ["data:internal:read", "data:public:read", "model:meta/llama-3.1-8b-instruct:infer"]
}

test_no_scopes_when_denied if {
	d := fx.decide(fx.with_registration({"suspended": true}))
	not d.allowed
	d.scopes == []
}

test_warnings_keep_scopes if {
	d := fx.decide(fx.with_intent({"ttl": "3h", "ttlSeconds": 10800}))
	d.allowed
	count(d.scopes) == 5
}

# --- grant TTL ---------------------------------------------------------------------------------

ttl(inp) := fx.decide(inp).grant_ttl_seconds

test_ttl_is_intent_ttl_under_caps if {
	ttl(fx.input_base) == 600
}

test_ttl_capped_by_agent if {
	ttl(fx.with_intent({"ttlSeconds": 7200})) == 1800
}

test_ttl_capped_by_config if {
	ttl(object.union(fx.with_intent({"ttlSeconds": 7200}), {"identity": {"registration": {"maxGrantTTLSeconds": 86400}}})) == 3600
	fx.decide_config(fx.input_base, {"max_grant_ttl_seconds": 300}).grant_ttl_seconds == 300
}

test_ttl_default_without_intent if {
	ttl(fx.with_change({"intent": null})) == 900
	fx.decide_config(fx.with_change({"intent": null}), {"default_grant_ttl_seconds": 2400}).grant_ttl_seconds == 1800
	fx.decide_config(fx.with_change({"intent": null}), {"default_grant_ttl_seconds": 120}).grant_ttl_seconds == 120
}

test_ttl_default_when_intent_has_no_ttl_seconds if {
	ttl(json.remove(fx.input_base, ["intent/ttlSeconds"])) == 900
}

test_ttl_without_registration_uses_config_cap if {
	ttl(object.union(fx.with_intent({"ttlSeconds": 7200}), {"identity": {"registration": null}})) == 3600
}

test_ttl_is_an_integer if {
	d := fx.decide(fx.with_intent({"ttlSeconds": 600.7}))
	d.grant_ttl_seconds == 600
}

# --- the shipped data.json ---------------------------------------------------------------------

test_shipped_config_is_well_formed if {
	cfg := data.kube_intent.config
	count(cfg.allowed_registries) > 0
	every prefix in cfg.allowed_registries {
		endswith(prefix, "/")
	}
	every _, level in cfg.data_class_levels {
		is_number(level)
	}
	cfg.max_grant_ttl_seconds >= cfg.default_grant_ttl_seconds
	is_object(cfg.enforcement)
	every rule, level in cfg.enforcement {
		admission.rule_catalog[rule]
		level in {"deny", "warn", "dryrun"}
	}
}
