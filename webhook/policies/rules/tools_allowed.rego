# tools-allowed
#
# Every tool the intent declares must be listed in the Agent's spec.tools (exact match).
package kube_intent.admission

rule_catalog["tools-allowed"] := {
	"enforcement": "deny",
	"summary": "Each intent.tools entry must be listed (exactly) in the Agent's spec.tools.",
}

violation contains new_violation("tools-allowed", sprintf("intent.tools[%d]", [i]), msg) if {
	some i, tool in intent_list("tools")
	not tool in registration_list("tools") # before the guards: false for an admissible pod
	has_intent
	has_registration
	msg := sprintf(
		"tool %q is not allowed for agent %q; allowed tools (Agent spec.tools): %s",
		[tool, agent, fmt_list(registration_list("tools"))],
	)
}
