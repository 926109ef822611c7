# METADATA
# title: kube-intent admission decision
# description: |
#   The single entry point queried by the webhook:
#   data.kube_intent.admission.decision. See policies/README.md for the input,
#   the decision and the rule catalogue.
#
#   Rules live in policies/rules/, one file per rule. Each rule registers itself in
#   `rule_catalog` (id -> default enforcement and summary) and adds its findings to
#   the partial set `violation` with `new_violation(id, field, message)`.
#   The effective enforcement of a finding is data.kube_intent.config.enforcement[id]
#   when that is one of deny|warn|dryrun, else the rule's default.
package kube_intent.admission

# The decision is total: every part below is defined for any input, including {}
# and a missing input document, so the webhook never receives an undefined result.
decision := {
	"allowed": allowed,
	"violations": violations,
	"scopes": scopes,
	"grant_ttl_seconds": grant_ttl_seconds,
}

# `violation` is a partial set: each rule file adds
#   violation contains new_violation("<rule-id>", "<field>", "<message>") if { ... }

# A finding of rule `rule` at `field`, carrying the rule's default enforcement
# (from rule_catalog; "deny" if the rule forgot to register, i.e. fail closed).
new_violation(rule, field, message) := {
	"rule": rule,
	"field": field,
	"message": message,
	"enforcement": default_enforcement(rule),
}

default_enforcement(rule) := e if {
	e := rule_catalog[rule].enforcement
	e in enforcement_levels
} else := "deny"

# Operator override (data.kube_intent.config.enforcement[rule]) else the default.
# An invalid override is ignored (and reported by the policy-config rule).
effective_enforcement(rule, default_level) := e if {
	e := config.enforcement[rule]
	e in enforcement_levels
} else := default_level if {
	default_level in enforcement_levels
} else := "deny"

_effective contains [rule, field, message, enforcement] if {
	some v in violation
	rule := object.get(v, "rule", "unknown")
	field := object.get(v, "field", "")
	message := object.get(v, "message", "")
	enforcement := effective_enforcement(rule, object.get(v, "enforcement", "deny"))
}

# Sorted by rule, then field (then message, for a stable order).
violations := [{"rule": t[0], "field": t[1], "message": t[2], "enforcement": t[3]} |
	some t in sort(_effective)
]

allowed := count([v | some v in violations; v.enforcement == "deny"]) == 0

# ---------------------------------------------------------------------------
# Scopes of the just-in-time grant: only when the pod is allowed.
#   model:<model>:infer   per intent.models entry
#   data:<class>:read     per intent.dataClasses entry
#   tool:<tool>:invoke    per intent.tools entry
#   egress:<host[:port]>  per intent.egress entry
# Values that could not form one RFC 6749 scope token (whitespace, quotes,
# backslash) or could read as wildcards are never turned into scopes (the
# intent-wellformed rule denies them as well).
# ---------------------------------------------------------------------------

default scopes := []

scopes := sort(_scopes) if allowed

# The intent schema's own patterns (webhook/intent.schema.json), re-checked here.
scope_value_patterns := {
	"models": `^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,252}$`,
	"dataClasses": `^[a-z][a-z0-9-]{0,62}$`,
	"tools": `^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$`,
	"egress": `^[A-Za-z0-9*][A-Za-z0-9.*-]{0,252}(:[0-9]{1,5})?$`,
}

scope_value_ok(kind, value) if {
	is_string(value)
	regex.match(scope_value_patterns[kind], value)
}

# The scope each kind of value becomes.
scope_formats := {
	"models": "model:%s:infer",
	"dataClasses": "data:%s:read",
	"tools": "tool:%s:invoke",
	"egress": "egress:%s",
}

# The intent's scope lists, kind -> list ([] when absent or not a list), gathered once:
# the scopes and intent-wellformed read them on every query.
intent_scope_lists := {kind: intent_list(kind) | some kind, _ in scope_value_patterns}

# Number of entries in those lists; each makes at most one scope.
intent_scope_entry_count := sum([count(values) | some values in intent_scope_lists])

# scope_value_ok(kind, value) inlined, with the two tables bound to locals: one rule
# lookup each rather than one per value (this runs on every query).
_scopes contains sprintf(formats[kind], [value]) if {
	patterns := scope_value_patterns
	formats := scope_formats
	some kind, values in intent_scope_lists
	some value in values
	is_string(value)
	regex.match(patterns[kind], value)
}

# ---------------------------------------------------------------------------
# Grant TTL: min(intent.ttlSeconds, Agent maxGrantTTLSeconds, config max);
# config.default_grant_ttl_seconds stands in for an absent intent (or ttl).
# ---------------------------------------------------------------------------

ttl_caps contains floor(cap) if {
	cap := config.max_grant_ttl_seconds
	is_number(cap)
	cap >= 1
}

ttl_caps contains floor(cap) if {
	cap := registration.maxGrantTTLSeconds
	is_number(cap)
	cap >= 1
}

# Undefined when there is no cap at all.
grant_ttl_cap := min(caps) if {
	caps := ttl_caps
	count(caps) > 0
}

requested_ttl_seconds := floor(ttl) if {
	ttl := intent.ttlSeconds
	is_number(ttl)
	ttl >= 1
} else := floor(ttl) if {
	ttl := config.default_grant_ttl_seconds
	is_number(ttl)
	ttl >= 1
} else := default_config.default_grant_ttl_seconds

grant_ttl_seconds := min(ttl_caps | {requested_ttl_seconds})
