# accelerator-budget
#
# The pod may use at most the Agent's spec.accelerators.max accelerators and,
# when spec.accelerators.resources is non-empty, only those resources (glob
# patterns, "/" delimiter; for DRA claims: the claim's device classes).
package kube_intent.admission

rule_catalog["accelerator-budget"] := {
	"enforcement": "deny",
	"summary": "workload.total must not exceed the Agent's spec.accelerators.max, and every accelerator resource (or DRA device class) must match spec.accelerators.resources when that is set.",
}

# An unset budget is a budget of 0 (fail closed).
# (registration.accelerators.<key> is undefined when accelerators is not an object.)
accelerator_max := budget if {
	budget := registration.accelerators.max
	is_number(budget)
} else := 0

accelerator_resource_patterns := patterns if {
	patterns := registration.accelerators.resources
} else := []

accelerator_resources_restricted if {
	is_array(accelerator_resource_patterns)
	count(accelerator_resource_patterns) > 0
}

accelerator_resource_allowed(resource) if {
	some pattern in accelerator_resource_patterns
	glob.match(pattern, ["/"], resource)
}

# Where the accelerators come from: one container or claim, else the whole spec.
accelerator_sources := {accelerator_use_field(use) | some use in workload_accelerators} | {claim_path(claim) | some claim in accelerator_claims}

accelerator_budget_field := field if {
	count(accelerator_sources) == 1
	some field in accelerator_sources
} else := "spec"

# In each rule body the test that fails for an admissible pod comes first and the
# has_intent / has_registration guards after it: the result is the same, and the
# guards are then never evaluated for the common, allowed pod.

violation contains new_violation("accelerator-budget", accelerator_budget_field, msg) if {
	workload_total > accelerator_max
	has_intent
	has_registration
	msg := sprintf(
		"pod uses %v accelerator(s) (%s) but agent %q may use at most %v (Agent spec.accelerators.max): request fewer, or ask an owner to raise the budget%s",
		[workload_total, workload_summary, agent, accelerator_max, owners_hint],
	)
}

violation contains new_violation("accelerator-budget", accelerator_use_field(use), msg) if {
	some use in workload_accelerators
	not accelerator_resource_allowed(use.resource)
	accelerator_resources_restricted
	has_intent
	has_registration
	msg := sprintf(
		"container %q uses accelerator resource %q, but agent %q may only use %s (Agent spec.accelerators.resources)",
		[object.get(use, "container", "?"), object.get(use, "resource", "?"), agent, fmt_list(accelerator_resource_patterns)],
	)
}

violation contains new_violation("accelerator-budget", claim_path(claim), msg) if {
	some claim in accelerator_claims
	some class in _claim_classes(claim)
	not accelerator_resource_allowed(class)
	accelerator_resources_restricted
	has_intent
	has_registration
	msg := sprintf(
		"resource claim %q uses device class %q, but agent %q may only use %s (Agent spec.accelerators.resources)",
		[object.get(claim, "name", "?"), class, agent, fmt_list(accelerator_resource_patterns)],
	)
}

# An unresolved claim's device classes are unknown: they cannot be checked (fail closed).
violation contains new_violation("accelerator-budget", claim_path(claim), msg) if {
	some claim in accelerator_claims
	count(_claim_classes(claim)) == 0
	accelerator_resources_restricted
	has_intent
	has_registration
	msg := sprintf(
		"resource claim %q could not be resolved (does its ResourceClaim or ResourceClaimTemplate %q exist?), so its device classes cannot be checked against %s (Agent spec.accelerators.resources): create it before the pod",
		[object.get(claim, "name", "?"), object.get(claim, "objectName", "?"), fmt_list(accelerator_resource_patterns)],
	)
}

# allocationMode All takes every matching device on the node: a number nobody can check at
# admission, so it is refused (the budget could not hold).
violation contains new_violation("accelerator-budget", claim_path(claim), msg) if {
	some claim in accelerator_claims
	object.get(claim, "allDevices", false) == true
	has_intent
	msg := sprintf(
		"claim %q asks for allocationMode All (every matching device on the node), which no budget can bound: request an ExactCount",
		[object.get(claim, "name", "?")],
	)
}
