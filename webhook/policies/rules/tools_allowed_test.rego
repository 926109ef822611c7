package kube_intent.admission_test.tools_allowed

import data.kube_intent.admission_test.fixtures as fx

shell := fx.with_intent({"tools": ["vector-search", "shell"]})

test_fires_for_unregistered_tool if {
	d := fx.decide(shell)
	v := fx.only(d, "tools-allowed")
	v.enforcement == "deny"
	v.field == "intent.tools[1]"
	v.message == `tool "shell" is not allowed for agent "summarizer"; allowed tools (Agent spec.tools): [vector-search, web-fetch]`
	not d.allowed
}

test_match_is_exact if {
	inp := fx.with_intent({"tools": ["vector-search-v2"]})
	fx.only(fx.decide(inp), "tools-allowed").field == "intent.tools[0]"
}

test_not_fired_for_registered_tools if {
	inp := fx.with_intent({"tools": ["web-fetch", "vector-search"]})
	fx.findings(fx.decide(inp), "tools-allowed") == []
}

test_not_fired_without_tools if {
	fx.findings(fx.decide(json.remove(fx.input_base, ["intent/tools"])), "tools-allowed") == []
}

test_not_fired_without_registration if {
	inp := object.union(shell, {"identity": {"registration": null}})
	fx.findings(fx.decide(inp), "tools-allowed") == []
}

test_enforcement_override if {
	d := fx.decide_enforced(shell, {"tools-allowed": "warn"})
	fx.only(d, "tools-allowed").enforcement == "warn"
	d.allowed
}
