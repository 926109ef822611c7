package kube_intent.admission_test.data_class_clearance

import data.kube_intent.admission_test.fixtures as fx

too_high := fx.with_intent({"dataClasses": ["internal", "confidential"], "justification": "Summarises signed customer contracts."})

test_fires_above_clearance if {
	d := fx.decide(too_high)
	v := fx.only(d, "data-class-clearance")
	v.enforcement == "deny"
	v.field == "intent.dataClasses[1]"
	v.message == `data class "confidential" (level 2) is above agent "summarizer"'s clearance (level 1, from Agent spec.dataClasses [public, internal]); the agent may read [public, internal]`
	not d.allowed
}

test_fires_for_unknown_class if {
	inp := fx.with_intent({"dataClasses": ["public", "secret"]})
	v := fx.only(fx.decide(inp), "data-class-clearance")
	v.field == "intent.dataClasses[1]"
	v.message == `data class "secret" is not a known class; known classes (lowest to highest): [public, internal, confidential, restricted]`
}

test_fires_without_any_clearance if {
	inp := fx.with_registration({"dataClasses": ["bogus"]})
	vs := fx.findings(fx.decide(inp), "data-class-clearance")
	[v.field | some v in vs] == ["intent.dataClasses[0]", "intent.dataClasses[1]"]
	contains(vs[0].message, `agent "summarizer" has no data clearance`)
}

test_clearance_covers_lower_levels if {
	# Registered for confidential only: public and internal are below it.
	inp := object.union(too_high, {"identity": {"registration": {"dataClasses": ["confidential"]}}})
	fx.findings(fx.decide(inp), "data-class-clearance") == []
}

test_not_fired_at_clearance if {
	fx.findings(fx.base_decision, "data-class-clearance") == []
}

test_levels_come_from_config if {
	# An operator's table replaces the default one (no merge): "internal" is now unknown.
	d := fx.decide_config(fx.input_base, {"data_class_levels": {"public": 0, "pii": 4}})
	v := fx.only(d, "data-class-clearance")
	v.field == "intent.dataClasses[1]"
	contains(v.message, `"internal" is not a known class; known classes (lowest to highest): [public, pii]`)
}

test_not_fired_without_registration if {
	inp := object.union(too_high, {"identity": {"registration": null}})
	fx.findings(fx.decide(inp), "data-class-clearance") == []
}

test_enforcement_override if {
	d := fx.decide_enforced(too_high, {"data-class-clearance": "dryrun"})
	fx.only(d, "data-class-clearance").enforcement == "dryrun"
	d.allowed
}
