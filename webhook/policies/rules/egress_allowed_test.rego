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

# --- wildcards in the intent: never broader than the Agent's pattern ----------------

wildcard_fields(agent_egress, destinations) := [v.field |
	inp := object.union(fx.with_intent({"egress": destinations}), {"identity": {"registration": {"egress": agent_egress}}})
	some v in fx.findings(fx.decide(inp), "egress-allowed")
]

test_double_star_intent_is_broader_than_single_star_agent if {
	d := fx.decide(object.union(
		fx.with_intent({"egress": ["**.example.com:443"]}),
		{"identity": {"registration": {"egress": ["*.example.com:443"]}}},
	))
	v := fx.only(d, "egress-allowed")
	v.field == "intent.egress[0]"
	v.message == `egress wildcard "**.example.com:443" is not covered by any Agent spec.egress pattern of agent "summarizer": each * in an intent needs a * (and each ** a **) at the same position in the Agent's pattern; allowed destinations: [*.example.com:443]`
	not d.allowed
	not "egress:**.example.com:443" in d.scopes
}

test_wildcard_intent_needs_a_wildcard_at_the_same_position if {
	wildcard_fields(["*.example.com:443"], ["*.example.com:443"]) == []
	wildcard_fields(["*.example.com"], ["*.example.com:8443"]) == []

	# A literal label in the Agent never covers a wildcard label in the intent.
	wildcard_fields(["api.*.com:443"], ["*.example.com:443"]) == ["intent.egress[0]"]
	wildcard_fields(["*.example.com:443"], ["*.*.com:443"]) == ["intent.egress[0]"]

	# Label counts must agree: "*" does not cross dots.
	wildcard_fields(["*.example.com"], ["*.*.example.com"]) == ["intent.egress[0]"]
}

test_wildcard_port_must_match_the_agents_port if {
	wildcard_fields(["*.example.com:443"], ["*.example.com:80", "*.example.com"]) == ["intent.egress[0]", "intent.egress[1]"]
}

test_double_star_needs_double_star if {
	wildcard_fields(["**.example.com"], ["**.example.com:443"]) == []
	wildcard_fields(["**.example.com"], ["*.example.com", "*.*.example.com", "**.api.example.com"]) == []
	wildcard_fields(["**.example.com"], ["**.com", "example.**"]) == ["intent.egress[0]", "intent.egress[1]"]
	wildcard_fields(["**"], ["**.anything.example", "*"]) == []
}

test_partial_wildcards if {
	# Identical partial labels, or a "*" label, cover a partial wildcard; nothing else does.
	wildcard_fields(["api-*.example.com"], ["api-*.example.com", "*.example.com"]) == ["intent.egress[1]"]
	wildcard_fields(["*.example.com"], ["api-*.example.com"]) == []

	# ...while literal intents keep plain glob matching.
	wildcard_fields(["api-*.example.com"], ["api-v1.example.com"]) == []
}

test_agent_pattern_with_inner_double_star_covers_only_literals if {
	wildcard_fields(["a.**.example.com"], ["a.*.example.com"]) == ["intent.egress[0]"]
	wildcard_fields(["a.**.example.com"], ["a.b.c.example.com"]) == []
}
