package kube_intent.admission_test.agent_suspended

import data.kube_intent.admission_test.fixtures as fx

suspended := fx.with_registration({"suspended": true})

test_fires_for_suspended_agent if {
	d := fx.decide(suspended)
	v := fx.only(d, "agent-suspended")
	v.enforcement == "deny"
	v.field == `metadata.labels["kube-intent.io/agent"]`
	v.message == `agent "summarizer" is suspended in namespace "team-a" (Agent spec.suspended: true): no new pods are admitted for it until an owner resumes it (owners: [alice@example.com])`
	not d.allowed
	d.scopes == []
}

test_not_fired_when_active if {
	fx.findings(fx.base_decision, "agent-suspended") == []
}

test_not_fired_for_non_boolean_flag if {
	fx.findings(fx.decide(fx.with_registration({"suspended": "false"})), "agent-suspended") == []
}

test_enforcement_override if {
	d := fx.decide_enforced(suspended, {"agent-suspended": "dryrun"})
	fx.only(d, "agent-suspended").enforcement == "dryrun"
	d.allowed
}
