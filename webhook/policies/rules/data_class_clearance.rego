# data-class-clearance
#
# Each data class the intent declares must be known (config.data_class_levels)
# and at or below the agent's clearance: the highest level among the Agent's
# spec.dataClasses.
package kube_intent.admission

rule_catalog["data-class-clearance"] := {
	"enforcement": "deny",
	"summary": "Each intent.dataClasses entry must be a known class at or below the agent's clearance (max level of the Agent's spec.dataClasses).",
}

# The agent's clearance level; undefined when its registration names no known class.
agent_clearance := max(levels) if {
	table := data_class_levels
	levels := [table[c] | some c in registration_list("dataClasses")]
	count(levels) > 0
}

has_clearance if is_number(agent_clearance)

# Known classes, lowest level first.
classes_by_level := [pair[1] | some pair in sort([[level, class] | some class, level in data_class_levels])]

# Classes the agent may read, lowest level first.
cleared_classes := [class |
	some class in classes_by_level
	data_class_levels[class] <= agent_clearance
]

# In each rule body the test that fails for an admissible pod comes first and the
# has_intent / has_registration guards after it (same result, fewer evaluations).

violation contains new_violation("data-class-clearance", sprintf("intent.dataClasses[%d]", [i]), msg) if {
	some i, class in intent_list("dataClasses")
	not class in object.keys(data_class_levels)
	has_intent
	has_registration
	msg := sprintf(
		"data class %q is not a known class; known classes (lowest to highest): %s",
		[class, fmt_list(classes_by_level)],
	)
}

violation contains new_violation("data-class-clearance", sprintf("intent.dataClasses[%d]", [i]), msg) if {
	some i, class in intent_list("dataClasses")
	level := data_class_levels[class]
	level > agent_clearance
	has_intent
	has_registration
	msg := sprintf(
		"data class %q (level %v) is above agent %q's clearance (level %v, from Agent spec.dataClasses %s); the agent may read %s",
		[class, level, agent, agent_clearance, fmt_list(registration_list("dataClasses")), fmt_list(cleared_classes)],
	)
}

violation contains new_violation("data-class-clearance", sprintf("intent.dataClasses[%d]", [i]), msg) if {
	not has_clearance
	has_intent
	has_registration
	some i, class in intent_list("dataClasses")
	class in object.keys(data_class_levels)
	msg := sprintf(
		"agent %q has no data clearance, so it may not read data class %q: its Agent spec.dataClasses %s names none of the known classes %s",
		[agent, class, fmt_list(registration_list("dataClasses")), fmt_list(classes_by_level)],
	)
}
