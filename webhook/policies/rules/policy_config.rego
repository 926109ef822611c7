# policy-config
#
# Reports enforcement overrides in data.kube_intent.config.enforcement that are
# ignored: an unknown rule id (typo?) or a level other than deny|warn|dryrun.
package kube_intent.admission

rule_catalog["policy-config"] := {
	"enforcement": "warn",
	"summary": "data.kube_intent.config.enforcement must name known rules and use deny, warn or dryrun; other entries are ignored.",
}

violation contains new_violation("policy-config", sprintf("data.kube_intent.config.enforcement[%q]", [rule]), msg) if {
	some rule, _ in config.enforcement
	not rule_catalog[rule]
	msg := sprintf(
		"enforcement override for unknown rule %q is ignored: use a rule id from data.kube_intent.admission.rule_catalog (policies/README.md)",
		[rule],
	)
}

violation contains new_violation("policy-config", sprintf("data.kube_intent.config.enforcement[%q]", [rule]), msg) if {
	some rule, level in config.enforcement
	rule_catalog[rule]
	not level in enforcement_levels
	msg := sprintf(
		"enforcement override %v for rule %q is invalid (use deny, warn or dryrun); its default %q applies",
		[json.marshal(level), rule, default_enforcement(rule)],
	)
}

violation contains new_violation("policy-config", "data.kube_intent.config.enforcement", msg) if {
	not is_object(config.enforcement)
	msg := sprintf(
		"data.kube_intent.config.enforcement must be an object mapping rule ids to deny|warn|dryrun, got %v: every rule keeps its default",
		[json.marshal(config.enforcement)],
	)
}
