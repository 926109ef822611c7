# accelerator-declared
#
# The intent must declare the accelerators the pod really uses:
# intent.accelerators.count == workload.total, and when
# intent.accelerators.resource is set, every accelerator the pod uses is of
# that resource (for a DRA claim: the declared resource is one of its device classes).
package kube_intent.admission

rule_catalog["accelerator-declared"] := {
	"enforcement": "deny",
	"summary": "intent.accelerators.count must equal the accelerators the pod uses (workload.total), and intent.accelerators.resource, when set, must be the resource they use.",
}

declared_accelerator_count := declared if {
	declared := intent.accelerators.count
	is_number(declared)
} else := 0

declared_accelerator_resource := resource if {
	resource := intent.accelerators.resource
	is_string(resource)
	resource != ""
}

# The test that fails for an admissible pod comes first, the has_intent guard after.

violation contains new_violation("accelerator-declared", "intent.accelerators.count", msg) if {
	declared_accelerator_count != workload_total
	has_intent
	msg := sprintf(
		"intent declares %v accelerator(s) but the pod uses %v (%s): %s",
		[declared_accelerator_count, workload_total, workload_summary, _count_fix],
	)
}

# With an unresolved claim the total is a lower bound: declaring it would only be right by luck.
_count_fix := "create the claim's ResourceClaim or ResourceClaimTemplate before the pod, so that its devices can be counted" if {
	count(unresolved_accelerator_claims) > 0
} else := sprintf("set intent.accelerators.count to %v, or change the pod's resources", [workload_total])

violation contains new_violation("accelerator-declared", "intent.accelerators.resource", msg) if {
	some use in workload_accelerators
	use.resource != declared_accelerator_resource
	has_intent
	msg := sprintf(
		"intent declares accelerator resource %q but container %q (%s) uses %q: fix intent.accelerators.resource or the container's resources",
		[declared_accelerator_resource, object.get(use, "container", "?"), container_path(use), object.get(use, "resource", "?")],
	)
}

# Unresolved claims (no device classes known) are left to accelerator-budget.
violation contains new_violation("accelerator-declared", "intent.accelerators.resource", msg) if {
	some claim in accelerator_claims
	classes := _claim_classes(claim)
	count(classes) > 0
	not declared_accelerator_resource in classes
	has_intent
	msg := sprintf(
		"intent declares accelerator resource %q but resource claim %q (%s) uses device classes %s: fix intent.accelerators.resource or the claim",
		[declared_accelerator_resource, object.get(claim, "name", "?"), claim_path(claim), fmt_list(classes)],
	)
}
