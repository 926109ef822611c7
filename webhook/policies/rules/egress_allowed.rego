# egress-allowed
#
# Every egress destination the intent declares must match one of the Agent's
# spec.egress entries: a host glob ("." is the delimiter, so "*.example.com"
# matches "api.example.com" but not "a.b.example.com"; "**" crosses "."),
# optionally with ":port". An entry without a port allows every port.
#
# A wildcard in the intent is a wildcard in the grant's scope, so it must not be
# broader than the Agent's pattern. Matching the intent's text against the
# Agent's glob is not enough ("*" matches the text "**", so "**.example.com"
# would pass "*.example.com"); a wildcard intent entry is compared label by
# label instead: each wildcard label of the intent needs the same label, or a
# "*" label, at the same position in the Agent's pattern ("**" only "**"), and a
# leading "**." in the Agent's pattern may stand for any labels.
package kube_intent.admission

rule_catalog["egress-allowed"] := {
	"enforcement": "deny",
	"summary": "Each intent.egress entry must match a host[:port] glob in the Agent's spec.egress.",
}

violation contains new_violation("egress-allowed", sprintf("intent.egress[%d]", [i]), msg) if {
	some i, destination in intent_list("egress")
	not egress_allowed(destination) # before the guards: false for an admissible pod
	has_intent
	has_registration
	msg := egress_denied_message(destination)
}

egress_denied_message(destination) := sprintf(
	"egress to %q is not allowed for agent %q; allowed destinations (Agent spec.egress, host globs, no port = any port): %s",
	[destination, agent, fmt_list(registration_list("egress"))],
) if {
	not contains(destination, "*")
} else := sprintf(
	"egress wildcard %q is not covered by any Agent spec.egress pattern of agent %q: each * in an intent needs a * (and each ** a **) at the same position in the Agent's pattern; allowed destinations: %s",
	[destination, agent, fmt_list(registration_list("egress"))],
)

# A destination with a "*" is a wildcard; contains() is tested inline rather than
# through a helper function (one call fewer on every query).

# A literal destination: the Agent's glob matches it.
egress_allowed(destination) if {
	not contains(destination, "*")
	some pattern in registration_list("egress")
	glob.match(pattern, ["."], destination)
}

egress_allowed(destination) if {
	not contains(destination, "*")
	some pattern in registration_list("egress")
	not contains(pattern, ":")
	[host, _] := split(destination, ":")
	glob.match(pattern, ["."], host)
}

# A wildcard destination: an Agent pattern at least as broad, compared structurally.
egress_allowed(destination) if {
	contains(destination, "*")
	some pattern in registration_list("egress")
	is_string(pattern)
	_egress_port_covered(pattern, destination)
	_egress_host_covered(_egress_host(pattern), _egress_host(destination))
}

_egress_host(entry) := split(entry, ":")[0]

# An Agent pattern without a port allows any port; with one, exactly that port.
_egress_port_covered(pattern, _) if not contains(pattern, ":")

_egress_port_covered(pattern, destination) if {
	contains(pattern, ":")
	contains(destination, ":")
	split(pattern, ":")[1] == split(destination, ":")[1]
}

# "**" alone is every host.
_egress_host_covered("**", _)

# Same number of labels, each covered at its position.
_egress_host_covered(pattern, host) if {
	not contains(pattern, "**")
	pattern_labels := split(pattern, ".")
	host_labels := split(host, ".")
	count(pattern_labels) == count(host_labels)
	every i, label in host_labels {
		_egress_label_covered(pattern_labels[i], label)
	}
}

# "**.<suffix>": the suffix covers the host's last labels, "**" at least one more.
_egress_host_covered(pattern, host) if {
	startswith(pattern, "**.")
	suffix_labels := split(substring(pattern, 3, -1), ".")
	not _any_contains(suffix_labels, "**")
	host_labels := split(host, ".")
	offset := count(host_labels) - count(suffix_labels)
	offset >= 1
	every i, label in suffix_labels {
		_egress_label_covered(label, host_labels[offset + i])
	}
}

_any_contains(labels, text) if {
	some label in labels
	contains(label, text)
}

# The same label covers itself (wildcards included: "api-*" covers "api-*").
_egress_label_covered(label, label)

# "*" covers any single label, wildcard or not, but not "**" (which crosses dots).
_egress_label_covered("*", label) if not contains(label, "**")

# A partial wildcard ("api-*") covers the literal labels it matches.
_egress_label_covered(pattern_label, label) if {
	not contains(label, "*")
	glob.match(pattern_label, ["."], label)
}
