# egress-allowed
#
# Every egress destination the intent declares must match one of the Agent's
# spec.egress entries: a host glob ("." is the delimiter, so "*.example.com"
# matches "api.example.com" but not "a.b.example.com"; "**" crosses "."),
# optionally with ":port". An entry without a port allows every port.
package kube_intent.admission

rule_catalog["egress-allowed"] := {
	"enforcement": "deny",
	"summary": "Each intent.egress entry must match a host[:port] glob in the Agent's spec.egress.",
}

violation contains new_violation("egress-allowed", sprintf("intent.egress[%d]", [i]), msg) if {
	has_intent
	has_registration
	some i, destination in intent_list("egress")
	not egress_allowed(destination)
	msg := sprintf(
		"egress to %q is not allowed for agent %q; allowed destinations (Agent spec.egress, host globs, no port = any port): %s",
		[destination, agent, fmt_list(registration_list("egress"))],
	)
}

egress_allowed(destination) if {
	some pattern in registration_list("egress")
	glob.match(pattern, ["."], destination)
}

egress_allowed(destination) if {
	some pattern in registration_list("egress")
	not contains(pattern, ":")
	[host, _] := split(destination, ":")
	glob.match(pattern, ["."], host)
}
