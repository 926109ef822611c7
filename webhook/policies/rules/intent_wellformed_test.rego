package kube_intent.admission_test.intent_wellformed

import data.kube_intent.admission_test.fixtures as fx

# A model name that would smuggle a tool scope into the space-separated scope claim.
smuggler := fx.with_intent({"models": ["meta/llama-3.1-8b-instruct", "x tool:shell:invoke"]})

test_fires_for_value_that_is_not_one_scope_token if {
	d := fx.decide(smuggler)
	v := fx.only(d, "intent-wellformed")
	v.enforcement == "deny"
	v.field == "intent.models[1]"
	startswith(v.message, `intent.models[1] value "x tool:shell:invoke" is malformed: it must match ^`)
	not d.allowed
	d.scopes == []
}

test_malformed_value_never_becomes_a_scope if {
	d := fx.decide_enforced(smuggler, {"intent-wellformed": "dryrun", "model-allowed": "dryrun"})
	d.allowed
	d.scopes == [
		"data:internal:read", "data:public:read", "egress:api.example.com:443",
		"model:meta/llama-3.1-8b-instruct:infer", "tool:vector-search:invoke",
	]
}

test_fires_for_wildcard_model if {
	inp := fx.with_intent({"models": ["*"]})
	fx.only(fx.decide(inp), "intent-wellformed").field == "intent.models[0]"
}

test_fires_for_non_list if {
	inp := fx.with_intent({"tools": "vector-search"})
	v := fx.only(fx.decide(inp), "intent-wellformed")
	v.field == "intent.tools"
	v.message == `intent.tools must be a list, got "vector-search"`
}

test_wildcard_egress_is_wellformed if {
	inp := fx.with_intent({"egress": ["*.s3.amazonaws.com:443"]})
	d := fx.decide(inp)
	fx.findings(d, "intent-wellformed") == []
	"egress:*.s3.amazonaws.com:443" in d.scopes
}

test_not_fired_in_base if {
	fx.findings(fx.base_decision, "intent-wellformed") == []
}

test_enforcement_override if {
	d := fx.decide_enforced(fx.with_intent({"dataClasses": ["Internal"]}), {"intent-wellformed": "warn", "data-class-clearance": "warn"})
	fx.only(d, "intent-wellformed").enforcement == "warn"
	d.allowed
	not "data:Internal:read" in d.scopes
}

# A repeated value makes one scope for two entries: no finding, one scope.
test_not_fired_for_repeated_values if {
	d := fx.decide(fx.with_intent({"tools": ["vector-search", "vector-search"]}))
	fx.findings(d, "intent-wellformed") == []
	[s | some s in d.scopes; startswith(s, "tool:")] == ["tool:vector-search:invoke"]
}
