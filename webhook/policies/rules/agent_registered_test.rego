package kube_intent.admission_test.agent_registered

import data.kube_intent.admission_test.fixtures as fx

elsewhere := fx.with_identity({"registration": null, "registeredIn": ["team-c", "team-b"]})

nowhere := fx.with_identity({"registration": null, "registeredIn": []})

test_fires_when_registered_in_other_namespaces if {
	d := fx.decide(elsewhere)
	v := fx.only(d, "agent-registered")
	v.enforcement == "deny"
	v.field == `metadata.labels["kube-intent.io/agent"]`
	contains(v.message, `agent "summarizer" is registered in namespaces [team-b, team-c], not "team-a"`)
	not d.allowed
	d.scopes == []
}

test_fires_when_registered_nowhere if {
	v := fx.only(fx.decide(nowhere), "agent-registered")
	startswith(v.message, `no Agent named "summarizer" is registered in any namespace`)
	contains(v.message, `in namespace "team-a"`)
}

test_fires_when_registration_missing_despite_listing if {
	inp := fx.with_identity({"registration": null, "registeredIn": ["team-a"]})
	v := fx.only(fx.decide(inp), "agent-registered")
	contains(v.message, "registration was not available to the policy")
}

test_registration_of_another_namespace_is_not_trusted if {
	inp := fx.with_registration({"namespace": "team-b"})
	d := fx.decide(inp)
	v := fx.only(d, "agent-registered")
	contains(v.message, "is Agent team-b/summarizer, which does not match the pod")
	not d.allowed
}

test_registration_of_another_agent_is_not_trusted if {
	inp := fx.with_registration({"name": "embedder"})
	fx.only(fx.decide(inp), "agent-registered")
}

test_no_per_registration_noise if {
	# Everything in the intent is wrong, but without a registration only
	# agent-registered fires (plus rules that need no registration).
	inp := object.union(elsewhere, {"intent": {
		"models": ["openai/gpt-4o"],
		"dataClasses": ["restricted", "secret"],
		"tools": ["shell"],
		"egress": ["evil.example.net"],
	}})
	fx.rules_of(fx.decide(inp)) == {"agent-registered", "justification-required"}
}

test_not_fired_when_registered if {
	fx.findings(fx.base_decision, "agent-registered") == []
}

test_not_fired_without_agent if {
	inp := fx.with_identity({"agent": null, "registration": null, "registeredIn": []})
	inp2 := json.remove(inp, ["pod/metadata/labels"])
	fx.findings(fx.decide(inp2), "agent-registered") == []
}

test_enforcement_override if {
	d := fx.decide_enforced(elsewhere, {"agent-registered": "warn"})
	fx.only(d, "agent-registered").enforcement == "warn"
	d.allowed
}
