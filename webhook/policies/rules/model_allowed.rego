# model-allowed
#
# Every model the intent declares must match one of the Agent's spec.models
# glob patterns ("/" is the delimiter: "meta/*" matches "meta/llama-3" but not
# "meta/x/y"; "**" crosses "/").
package kube_intent.admission

rule_catalog["model-allowed"] := {
	"enforcement": "deny",
	"summary": "Each intent.models entry must match a glob pattern in the Agent's spec.models.",
}

violation contains new_violation("model-allowed", sprintf("intent.models[%d]", [i]), msg) if {
	some i, model in intent_list("models")
	not model_allowed(model) # before the guards: false for an admissible pod
	has_intent
	has_registration
	msg := sprintf(
		"model %q is not allowed for agent %q; allowed models (Agent spec.models, glob patterns): %s",
		[model, agent, fmt_list(registration_list("models"))],
	)
}

model_allowed(model) if {
	some pattern in registration_list("models")
	glob.match(pattern, ["/"], model)
}
