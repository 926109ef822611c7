# agent-registered
#
# The agent named by the pod must be registered in the pod's namespace.
package kube_intent.admission

rule_catalog["agent-registered"] := {
	"enforcement": "deny",
	"summary": "The agent named by the pod must have an Agent registration in the pod's namespace.",
}

violation contains new_violation("agent-registered", sprintf("metadata.labels[%q]", [agent_label]), agent_registered_message) if {
	not has_registration # first: false for every registered pod
	is_string(agent)
}

# Namespaces holding an Agent with the pod's agent name (identity.registeredIn).
registered_in := sort([ns | some ns in identity.registeredIn; is_string(ns)])

agent_registered_message := msg if {
	# A registration was passed but belongs to another agent or namespace.
	is_object(identity.registration)
	msg := sprintf(
		"the registration supplied for agent %q is Agent %v/%v, which does not match the pod (agent %q in namespace %q): the pod is treated as unregistered",
		[agent, object.get(identity.registration, "namespace", "?"), object.get(identity.registration, "name", "?"), agent, namespace],
	)
} else := msg if {
	count(registered_in) > 0
	not namespace in registered_in
	msg := sprintf(
		"agent %q is registered in namespaces %s, not %q: run the pod in one of those namespaces, or have an owner register Agent %q in %q",
		[agent, fmt_list(registered_in), namespace, agent, namespace],
	)
} else := msg if {
	namespace in registered_in
	msg := sprintf(
		"agent %q is listed as registered in namespace %q but its registration was not available to the policy: check the webhook's Agent sync, then retry",
		[agent, namespace],
	)
} else := sprintf(
	"no Agent named %q is registered in any namespace: create an Agent (kube-intent.io/v1alpha1) named %q in namespace %q, or fix the label %s%s",
	[agent, agent, namespace, agent_label, agents_here_hint],
)
