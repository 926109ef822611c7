# serviceaccount-bound
#
# The pod must run under one of the ServiceAccounts its Agent registration allows.
package kube_intent.admission

rule_catalog["serviceaccount-bound"] := {
	"enforcement": "deny",
	"summary": "The pod's ServiceAccount must be one of the Agent's spec.serviceAccounts.",
}

violation contains new_violation("serviceaccount-bound", "spec.serviceAccountName", msg) if {
	not service_account in registration_list("serviceAccounts") # first: false when bound
	has_registration
	msg := sprintf(
		"ServiceAccount %q is not bound to agent %q in namespace %q: set spec.serviceAccountName to one of %s (Agent spec.serviceAccounts)",
		[service_account, agent, namespace, fmt_list(registration_list("serviceAccounts"))],
	)
}
