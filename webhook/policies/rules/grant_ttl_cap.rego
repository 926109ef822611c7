# grant-ttl-cap
#
# Warns when the intent asks for a longer grant than policy allows (the grant is capped).
package kube_intent.admission

rule_catalog["grant-ttl-cap"] := {
	"enforcement": "warn",
	"summary": "intent.ttl above the effective cap (min of the Agent's maxGrantTTL and config.max_grant_ttl_seconds): the grant is capped.",
}

violation contains new_violation("grant-ttl-cap", "intent.ttl", msg) if {
	ttl := intent.ttlSeconds
	is_number(ttl)
	ttl > min(ttl_caps) # grant_ttl_cap, without a rule lookup (undefined without caps)
	has_intent
	msg := sprintf(
		"intent.ttl %v (%v s) exceeds the maximum grant TTL (%s): the grant will be capped to %v s",
		[object.get(intent, "ttl", ttl), ttl, ttl_cap_sources, grant_ttl_cap],
	)
}

ttl_cap_sources := concat(" and ", array.concat(
	[sprintf("Agent maxGrantTTL %v s", [registration.maxGrantTTLSeconds]) | has_registration; registration.maxGrantTTLSeconds >= 1],
	[sprintf("policy max_grant_ttl_seconds %v s", [config.max_grant_ttl_seconds]) | is_number(config.max_grant_ttl_seconds); config.max_grant_ttl_seconds >= 1],
))
