package kube_intent.admission_test.intent_required

import data.kube_intent.admission_test.fixtures as fx

no_intent := fx.with_change({"intent": null})

test_fires_when_intent_is_null if {
	d := fx.decide(no_intent)
	v := fx.only(d, "intent-required")
	v.enforcement == "deny"
	v.field == `metadata.annotations["kube-intent.io/intent"]`
	contains(v.message, "kube-intent.io/intent annotation")
	contains(v.message, "1 accelerator(s) (vllm: nvidia.com/gpu=1)")
	not d.allowed
	d.scopes == []
}

test_fires_when_intent_is_absent if {
	d := fx.decide(json.remove(fx.input_base, ["intent"]))
	fx.only(d, "intent-required")
}

test_alone_when_intent_is_null if {
	# The intent-dependent rules stay quiet: only intent-required explains the denial.
	fx.rules_of(fx.decide(no_intent)) == {"intent-required"}
}

test_with_identity_and_image_rules_when_intent_is_null if {
	inp := object.union(no_intent, {
		"identity": {"registration": null, "registeredIn": []},
		"pod": {"spec": {"containers": [{"name": "vllm", "image": "busybox"}]}},
	})
	fx.rules_of(fx.decide(inp)) == {"intent-required", "agent-registered", "image-registry", "image-digest-pinned"}
}

test_not_fired_with_intent if {
	fx.findings(fx.base_decision, "intent-required") == []
}

test_enforcement_override if {
	d := fx.decide_enforced(no_intent, {"intent-required": "warn"})
	fx.only(d, "intent-required").enforcement == "warn"
	d.allowed
	d.scopes == [] # nothing declared, nothing granted
	d.grant_ttl_seconds == 900 # config default, under the Agent's 1800 s cap
}
