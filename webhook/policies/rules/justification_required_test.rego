package kube_intent.admission_test.justification_required

import data.kube_intent.admission_test.fixtures as fx

# Cleared for confidential data, declares it, gives no justification.
confidential := object.union(fx.input_base, {
	"identity": {"registration": {"dataClasses": ["confidential"]}},
	"intent": {"dataClasses": ["internal", "confidential"]},
})

test_warns_without_justification if {
	d := fx.decide(confidential)
	v := fx.only(d, "justification-required")
	v.enforcement == "warn"
	v.field == "intent.justification"
	v.message == "intent reads sensitive data [confidential] but gives no intent.justification: add one saying why the agent needs it (auditors see it)"
	d.allowed
}

test_blank_justification_counts_as_none if {
	inp := object.union(confidential, {"intent": {"justification": "   \n\t "}})
	fx.only(fx.decide(inp), "justification-required")
}

test_not_fired_with_justification if {
	inp := object.union(confidential, {"intent": {"justification": "Summarises signed customer contracts for the legal team."}})
	fx.findings(fx.decide(inp), "justification-required") == []
}

test_not_fired_for_public_and_internal if {
	fx.findings(fx.base_decision, "justification-required") == []
}

test_threshold_comes_from_config if {
	d := fx.decide_config(fx.input_base, {"justification_min_level": 1})
	contains(fx.only(d, "justification-required").message, "sensitive data [internal]")
}

test_enforcement_override if {
	d := fx.decide_enforced(confidential, {"justification-required": "deny"})
	fx.only(d, "justification-required").enforcement == "deny"
	not d.allowed
}
