package kube_intent.admission_test.agent_required

import data.kube_intent.admission_test.fixtures as fx

# What the webhook sends for a pod without the label.
no_agent := json.patch(fx.input_base, [
	{"op": "remove", "path": "/pod/metadata/labels/kube-intent.io~1agent"},
	{"op": "replace", "path": "/identity/agent", "value": null},
	{"op": "replace", "path": "/identity/registration", "value": null},
	{"op": "replace", "path": "/identity/registeredIn", "value": []},
])

test_fires_without_agent_label if {
	d := fx.decide(no_agent)
	v := fx.only(d, "agent-required")
	v.enforcement == "deny"
	v.field == `metadata.labels["kube-intent.io/agent"]`
	contains(v.message, `set the label kube-intent.io/agent to the name of an Agent registered in namespace "team-a"`)
	not d.allowed
}

test_alone_without_agent if {
	# No registration lookup happened: agent-registered and the per-registration rules stay quiet.
	fx.rules_of(fx.decide(no_agent)) == {"agent-required"}
}

test_fires_on_empty_agent_name if {
	inp := json.patch(no_agent, [{"op": "add", "path": "/pod/metadata/labels/kube-intent.io~1agent", "value": ""}])
	fx.only(fx.decide(inp), "agent-required")
}

test_names_agents_registered_in_namespace if {
	d := fx.decide(no_agent) with data.kube_intent.agents as {
		"team-a": {"summarizer": fx.registration, "embedder": {}},
		"team-b": {"other": {}},
	}
	endswith(fx.only(d, "agent-required").message, "(Agents registered there: [embedder, summarizer])")
}

test_not_fired_with_agent if {
	fx.findings(fx.base_decision, "agent-required") == []
}

test_label_is_used_when_identity_has_no_agent if {
	# Near miss: identity without an agent, but the pod carries the label.
	inp := json.remove(fx.input_base, ["identity/agent"])
	fx.findings(fx.decide(inp), "agent-required") == []
}

test_enforcement_override if {
	d := fx.decide_enforced(no_agent, {"agent-required": "dryrun"})
	fx.only(d, "agent-required").enforcement == "dryrun"
	d.allowed
}
