# intent-wellformed
#
# Defence in depth for the grant: every models/dataClasses/tools/egress value
# must match the intent schema's pattern, so that it forms exactly one scope
# token (no whitespace that would smuggle extra scopes into the space-separated
# `scope` claim, no glob characters that could read as wildcards). The webhook's
# JSON Schema check already guarantees this; this rule catches a regression.
package kube_intent.admission

rule_catalog["intent-wellformed"] := {
	"enforcement": "deny",
	"summary": "Each intent models/dataClasses/tools/egress value must match the intent schema's pattern (it becomes one grant scope).",
}

violation contains new_violation("intent-wellformed", sprintf("intent.%s[%d]", [kind, i]), msg) if {
	# First, a cheap condition every finding needs: some entry made no scope (fewer
	# scopes than entries; duplicate entries make fewer too, and then nothing below fires).
	count(_scopes) < intent_scope_entry_count
	has_intent
	some kind, pattern in scope_value_patterns
	some i, value in intent_list(kind)
	not scope_value_ok(kind, value)
	msg := sprintf(
		"intent.%s[%d] value %v is malformed: it must match %s",
		[kind, i, json.marshal(value), pattern],
	)
}

violation contains new_violation("intent-wellformed", sprintf("intent.%s", [kind]), msg) if {
	has_intent
	some kind, value in object.filter(intent, scope_value_patterns)
	not is_array(value)
	msg := sprintf("intent.%s must be a list, got %v", [kind, json.marshal(value)])
}
