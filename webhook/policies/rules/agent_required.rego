# agent-required
#
# A GPU pod must name its agent with the kube-intent.io/agent label.
package kube_intent.admission

rule_catalog["agent-required"] := {
	"enforcement": "deny",
	"summary": "A GPU pod must name the agent it runs for with the kube-intent.io/agent label.",
}

violation contains new_violation("agent-required", sprintf("metadata.labels[%q]", [agent_label]), msg) if {
	agent == null
	msg := sprintf(
		"pod names no agent: set the label %s to the name of an Agent registered in %s%s",
		[agent_label, namespace_text, agents_here_hint],
	)
}

# " (Agents registered there: [a, b])", or "" when none are known.
agents_here_hint := sprintf(" (Agents registered there: %s)", [fmt_list(agents_in_namespace)]) if {
	count(agents_in_namespace) > 0
} else := ""
