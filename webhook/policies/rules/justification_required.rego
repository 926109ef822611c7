# justification-required
#
# Warns when the intent reads confidential or restricted data without a justification.
package kube_intent.admission

rule_catalog["justification-required"] := {
	"enforcement": "warn",
	"summary": "Intents that read data at or above config.justification_min_level (confidential, restricted) should carry intent.justification.",
}

justification_min_level := level if {
	level := config.justification_min_level
	is_number(level)
} else := default_config.justification_min_level

sensitive_classes := [class |
	some class in intent_list("dataClasses")
	data_class_levels[class] >= justification_min_level
]

has_justification if {
	is_string(intent.justification)
	trim_space(intent.justification) != ""
}

violation contains new_violation("justification-required", "intent.justification", msg) if {
	# Cheapest test first: an intent that gives a justification never needs one.
	not has_justification
	count(sensitive_classes) > 0
	has_intent
	msg := sprintf(
		"intent reads sensitive data %s but gives no intent.justification: add one saying why the agent needs it (auditors see it)",
		[fmt_list(sensitive_classes)],
	)
}
