package kube_intent.admission_test.serviceaccount_bound

import data.kube_intent.admission_test.fixtures as fx

default_sa := object.union(fx.with_identity({"serviceAccount": "default"}), {"pod": {"spec": {"serviceAccountName": "default"}}})

test_fires_for_unbound_serviceaccount if {
	d := fx.decide(default_sa)
	v := fx.only(d, "serviceaccount-bound")
	v.enforcement == "deny"
	v.field == "spec.serviceAccountName"
	v.message == `ServiceAccount "default" is not bound to agent "summarizer" in namespace "team-a": set spec.serviceAccountName to one of [summarizer] (Agent spec.serviceAccounts)`
	not d.allowed
}

test_not_fired_for_any_listed_serviceaccount if {
	inp := object.union(default_sa, {"identity": {"registration": {"serviceAccounts": ["summarizer", "default"]}}})
	fx.findings(fx.decide(inp), "serviceaccount-bound") == []
}

test_not_fired_in_base if {
	fx.findings(fx.base_decision, "serviceaccount-bound") == []
}

test_not_fired_without_registration if {
	inp := object.union(default_sa, {"identity": {"registration": null}})
	fx.findings(fx.decide(inp), "serviceaccount-bound") == []
}

test_enforcement_override if {
	d := fx.decide_enforced(default_sa, {"serviceaccount-bound": "warn"})
	fx.only(d, "serviceaccount-bound").enforcement == "warn"
	d.allowed
}
