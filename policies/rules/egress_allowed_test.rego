package kube_intent.admission_test.egress_allowed

import data.kube_intent.admission_test.fixtures as fx

evil := fx.with_intent({"egress": ["api.example.com", "evil.example.net"]})

egress_fields(destinations) := [v.field |
	some v in fx.findings(fx.decide(fx.with_intent({"egress": destinations})), "egress-allowed")
]

test_fires_for_unregistered_destination if {
	d := fx.decide(evil)
	v := fx.only(d, "egress-allowed")
	v.enforcement == "deny"
	v.field == "intent.egress[1]"
	v.message == `egress to "evil.example.net" is not allowed for agent "summarizer"; allowed destinations (Agent spec.egress, host globs, no port = any port): [api.example.com, *.s3.amazonaws.com:443]`
	not d.allowed
}

test_entry_without_port_allows_any_port if {
	egress_fields(["api.example.com", "api.example.com:443", "api.example.com:8443"]) == []
}

test_entry_with_port_allows_only_that_port if {
	egress_fields(["models.s3.amazonaws.com:443", "models.s3.amazonaws.com:80", "models.s3.amazonaws.com"]) == ["intent.egress[1]", "intent.egress[2]"]
}

test_host_glob_matches_one_label if {
	egress_fields(["a.b.s3.amazonaws.com:443", "s3.amazonaws.com:443"]) == ["intent.egress[0]", "intent.egress[1]"]
}

test_wildcard_intent_needs_wildcard_registration if {
	egress_fields(["*.example.com"]) == ["intent.egress[0]"]
	egress_fields(["*.s3.amazonaws.com:443"]) == []
}

test_lookalike_host_is_denied if {
	egress_fields(["api.example.com.evil.net", "xapi.example.com"]) == ["intent.egress[0]", "intent.egress[1]"]
}

test_not_fired_without_registration if {
	inp := object.union(evil, {"identity": {"registration": null}})
	fx.findings(fx.decide(inp), "egress-allowed") == []
}

test_enforcement_override if {
	d := fx.decide_enforced(evil, {"egress-allowed": "dryrun"})
	fx.only(d, "egress-allowed").enforcement == "dryrun"
	d.allowed
	"egress:evil.example.net" in d.scopes
}
