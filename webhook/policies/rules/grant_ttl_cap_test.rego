package kube_intent.admission_test.grant_ttl_cap

import data.kube_intent.admission_test.fixtures as fx

two_hours := fx.with_intent({"ttl": "2h", "ttlSeconds": 7200})

test_warns_when_ttl_is_capped if {
	d := fx.decide(two_hours)
	v := fx.only(d, "grant-ttl-cap")
	v.enforcement == "warn"
	v.field == "intent.ttl"
	v.message == "intent.ttl 2h (7200 s) exceeds the maximum grant TTL (Agent maxGrantTTL 1800 s and policy max_grant_ttl_seconds 3600 s): the grant will be capped to 1800 s"
	d.allowed
	d.grant_ttl_seconds == 1800
}

test_policy_cap_applies_below_agent_cap if {
	inp := object.union(two_hours, {"identity": {"registration": {"maxGrantTTLSeconds": 86400}}})
	d := fx.decide(inp)
	endswith(fx.only(d, "grant-ttl-cap").message, "capped to 3600 s")
	d.grant_ttl_seconds == 3600
}

test_not_fired_at_the_cap if {
	inp := fx.with_intent({"ttl": 1800, "ttlSeconds": 1800})
	d := fx.decide(inp)
	fx.findings(d, "grant-ttl-cap") == []
	d.grant_ttl_seconds == 1800
}

test_enforcement_override if {
	d := fx.decide_enforced(two_hours, {"grant-ttl-cap": "deny"})
	fx.only(d, "grant-ttl-cap").enforcement == "deny"
	not d.allowed
}
