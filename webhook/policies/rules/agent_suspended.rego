# agent-suspended
#
# No new pods are admitted for a suspended agent.
package kube_intent.admission

rule_catalog["agent-suspended"] := {
	"enforcement": "deny",
	"summary": "No new pods are admitted for an agent whose registration is suspended.",
}

violation contains new_violation("agent-suspended", sprintf("metadata.labels[%q]", [agent_label]), msg) if {
	registration.suspended == true # first: false for every active agent
	has_registration
	msg := sprintf(
		"agent %q is suspended in namespace %q (Agent spec.suspended: true): no new pods are admitted for it until an owner resumes it%s",
		[agent, namespace, owners_hint],
	)
}

owners_hint := sprintf(" (owners: %s)", [fmt_list(registration_list("owners"))]) if {
	count(registration_list("owners")) > 0
} else := ""
