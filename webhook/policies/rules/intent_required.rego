# intent-required
#
# A GPU pod must declare its intent in the kube-intent.io/intent annotation.
package kube_intent.admission

rule_catalog["intent-required"] := {
	"enforcement": "deny",
	"summary": "A GPU pod must declare its intent in the kube-intent.io/intent annotation.",
}

# The webhook sends only GPU pods (and denies schema-invalid intents itself), so a
# null intent here means the annotation is missing.
violation contains new_violation("intent-required", sprintf("metadata.annotations[%q]", [intent_annotation]), msg) if {
	not has_intent
	msg := sprintf(
		"pod uses %v accelerator(s) (%s) but has no %s annotation: declare the intent (JSON or YAML) with purpose, models, dataClasses, accelerators and ttl, plus tools, egress and justification as needed",
		[workload_total, workload_summary, intent_annotation],
	)
}
