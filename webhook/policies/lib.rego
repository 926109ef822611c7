# kube-intent admission library
#
# Normalised, always-defined views of the policy input and of the operator's
# configuration (data.kube_intent.config). Rules read these instead of `input`
# so that a missing or mistyped field never makes a rule silently undefined
# (which, for a deny rule, would fail open).
package kube_intent.admission

agent_label := "kube-intent.io/agent"

intent_annotation := "kube-intent.io/intent"

enforcement_levels := {"deny", "warn", "dryrun"}

# ---------------------------------------------------------------------------
# Configuration: data.kube_intent.config over built-in, fail-closed defaults.
# The merge is shallow on purpose: an operator's data_class_levels replaces the
# default table instead of being merged into it.
# ---------------------------------------------------------------------------

default_config := {
	"allowed_registries": [],
	"data_class_levels": {"public": 0, "internal": 1, "confidential": 2, "restricted": 3},
	"max_grant_ttl_seconds": 3600,
	"default_grant_ttl_seconds": 900,
	"justification_min_level": 2,
	"enforcement": {},
}

default _config_data := {}

_config_data := cfg if {
	cfg := data.kube_intent.config
	is_object(cfg)
}

# The keys of default_config, each from the operator's config when it has the key
# (whatever its value) else the default. It is built on every query, so the usual
# case is tested first: a config with exactly the known keys (as data.json) is used
# as it is. Otherwise the two halves below have disjoint keys, so object.union (deep
# for shared keys) merges them shallowly.
config := cfg if {
	cfg := data.kube_intent.config
	is_object(cfg)
	object.keys(cfg) == object.keys(default_config)
} else := object.union(
	object.remove(defaults, object.keys(cfg)),
	object.filter(cfg, object.keys(defaults)),
) if {
	cfg := _config_data
	defaults := default_config
}

# Allowed registry prefixes, each forced to end in "/" so that "nvcr.io" can
# never admit "nvcr.io.attacker.example/...". A list already in that form (as in
# the shipped data.json) is used as it is, which is cheaper than rebuilding it on
# every query; else non-strings and "" are dropped and a "/" is added where missing
# (trim_suffix removes at most one "/": "a/" stays "a/", "a//" stays "a//").
allowed_registries := prefixes if {
	prefixes := config.allowed_registries
	is_array(prefixes)
	every prefix in prefixes {
		is_string(prefix)
		endswith(prefix, "/")
	}
} else := [concat("", [trim_suffix(prefix, "/"), "/"]) |
	some prefix in config.allowed_registries
	is_string(prefix)
	prefix != ""
]

# (A table whose levels are all numbers is used as it is.)
data_class_levels := table if {
	table := config.data_class_levels
	is_object(table)
	every level in table {
		is_number(level)
	}
} else := {class: level |
	some class, level in config.data_class_levels
	is_number(level)
}

# ---------------------------------------------------------------------------
# Input views.
# ---------------------------------------------------------------------------

# (Each view binds the value once and tests the local: a rule or input reference
# costs more than a local variable, and these are read on every query.)
default pod := {}

pod := value if {
	value := input.pod
	is_object(value)
}

default pod_spec := {}

# pod.spec, read from the input directly (input.pod.spec is undefined unless
# input.pod is an object): the pod view itself is then only evaluated for the
# label and namespace fallbacks.
pod_spec := value if {
	value := input.pod.spec
	is_object(value)
}

default identity := {}

identity := value if {
	value := input.identity
	is_object(value)
}

# The parsed intent, or null when the pod has no kube-intent.io/intent annotation.
default intent := null

intent := value if {
	value := input.intent
	is_object(value)
}

has_intent if is_object(intent)

# A list-valued intent field ([] when absent or not a list).
intent_list(key) := value if {
	value := intent[key]
	is_array(value)
} else := []

# The agent named by the pod (identity.agent, else the label itself), or null.
default agent := null

agent := name if {
	name := identity.agent
	is_string(name)
	name != ""
} else := label if {
	label := pod.metadata.labels[agent_label]
	is_string(label)
	label != ""
}

# The namespace the pod is admitted into (from the admission request).
default namespace := ""

# For messages: `namespace "team-a"`, or a description when unknown.
namespace_text := sprintf("namespace %q", [namespace]) if {
	namespace != ""
} else := "the pod's namespace"

namespace := ns if {
	ns := identity.namespace
	is_string(ns)
	ns != ""
} else := ns if {
	ns := input.request.namespace
	is_string(ns)
	ns != ""
} else := ns if {
	ns := pod.metadata.namespace
	is_string(ns)
	ns != ""
}

default service_account := "default"

service_account := sa if {
	sa := identity.serviceAccount
	is_string(sa)
	sa != ""
} else := sa if {
	sa := pod_spec.serviceAccountName
	is_string(sa)
	sa != ""
}

# The agent's registration, only if it really is the Agent named by the pod in
# the pod's namespace. Undefined otherwise: per-registration rules then stay
# quiet and agent-registered alone explains the denial.
registration := reg if {
	reg := identity.registration
	is_object(reg)
	name := agent
	is_string(name)
	object.get(reg, "name", name) == name
	ns := namespace
	object.get(reg, "namespace", ns) == ns
}

has_registration if is_object(registration)

# A list-valued registration field ([] when absent or not a list).
registration_list(key) := value if {
	value := registration[key]
	is_array(value)
} else := []

# The registration's accelerators object ({} when absent or not an object). Kept for
# rules that read it; the bundled accelerator-budget reads registration.accelerators.*
# directly, which is the same and one rule evaluation cheaper.
registration_accelerators := value if {
	value := registration.accelerators
	is_object(value)
} else := {}

# Names of Agents registered in the pod's namespace (from data.kube_intent.agents,
# synced by the webhook); used only to make messages actionable.
agents_in_namespace := sort([name |
	some name, _ in data.kube_intent.agents[namespace]
])

# ---------------------------------------------------------------------------
# Workload: accelerators the pod uses.
# ---------------------------------------------------------------------------

workload_accelerators := [use |
	some use in input.workload.accelerators
	is_object(use)
]

accelerator_claims := [claim |
	some claim in input.workload.claims
	is_object(claim)
	claim.accelerator == true
]

# Paths to devices that allocate nothing (env vars a runtime hook reads, device
# hostPath volumes, privileged containers, a GPU runtime class without an
# allocation, device annotations): never counted, refused by accelerator-side-door.
workload_side_doors := [door |
	some door in input.workload.sideDoors
	is_object(door)
]

workload_total := total if {
	total := input.workload.total
	is_number(total)
} else := sum([_count(use) | some use in workload_accelerators]) + sum([_count(claim) | some claim in accelerator_claims])

_count(item) := item.count if {
	is_number(item.count)
} else := 0

# "vllm: nvidia.com/gpu=2, claim gpus: gpu.nvidia.com=1" (ASCII only: messages
# may end up in HTTP Warning headers)
workload_summary := "no accelerators" if {
	count(workload_accelerators) + count(accelerator_claims) == 0
} else := concat(", ", array.concat(
	[sprintf("%s: %s=%v", [object.get(use, "container", "?"), object.get(use, "resource", "?"), _count(use)]) |
		some use in workload_accelerators
	],
	[_claim_summary(claim) | some claim in accelerator_claims],
))

_claim_classes(claim) := [c | some c in claim.deviceClasses; is_string(c)]

# An unresolved claim (its object could not be read) is counted as one device so that the pod
# stays governed, but that count is a guess: say so rather than print "claim gpus: =1".
_claim_summary(claim) := sprintf("claim %s: unresolved, counted as %v (%s %q could not be read)", [
	object.get(claim, "name", "?"), _count(claim), _claim_object_kind(claim), object.get(claim, "objectName", "?"),
]) if {
	claim_unresolved(claim)
} else := sprintf("claim %s: %s=%v", [object.get(claim, "name", "?"), concat("|", _claim_classes(claim)), _count(claim)])

claim_unresolved(claim) if object.get(claim, "resolved", true) == false

_claim_object_kind(claim) := "ResourceClaimTemplate" if {
	object.get(claim, "source", "") == "resourceClaimTemplateName"
} else := "ResourceClaim"

unresolved_accelerator_claims := [claim | some claim in accelerator_claims; claim_unresolved(claim)]

# Pod-spec key for a workload.accelerators[].containerType.
container_list_key := {
	"container": "containers",
	"initContainer": "initContainers",
	"ephemeralContainer": "ephemeralContainers",
}

# JSON path of the container that owns an accelerator use, e.g. spec.containers[1].
container_path(use) := sprintf("spec.%s[%d]", [key, indices[0]]) if {
	key := object.get(container_list_key, object.get(use, "containerType", "container"), "containers")
	indices := [i | some i, c in pod_spec[key]; c.name == use.container]
	count(indices) > 0
} else := sprintf("spec.containers[name=%v]", [object.get(use, "container", "?")])

# The field a pod author edits to change an accelerator use: what the webhook
# reports (a container's resources, or a GPU-sharing annotation), else derived.
accelerator_use_field(use) := use.field if {
	is_string(use.field)
	use.field != ""
} else := sprintf("%s.resources", [container_path(use)])

# JSON path of a pod-level resource claim, e.g. spec.resourceClaims[0].
claim_path(claim) := sprintf("spec.resourceClaims[%d]", [indices[0]]) if {
	indices := [i | some i, c in pod_spec.resourceClaims; c.name == claim.name]
	count(indices) > 0
} else := sprintf("spec.resourceClaims[name=%v]", [object.get(claim, "name", "?")])

# ---------------------------------------------------------------------------
# Images.
# ---------------------------------------------------------------------------

# Every container of every kind, with the path of its image field.
pod_images contains {"path": sprintf("spec.%s[%d].image", [key, i]), "container": c, "image": object.get(c, "image", null)} if {
	some key in ["containers", "initContainers", "ephemeralContainers"]
	some i, c in pod_spec[key]
}

# Normalise an image reference the way Docker does: the first path component is
# a registry host only if it contains "." or ":", is "localhost", or has upper
# case; otherwise the image is on docker.io, and single-component names live
# under docker.io/library/. "index.docker.io" is docker.io. Hosts are lower-cased.
normalize_image(image) := concat("/", [domain, _docker_library(domain, remainder)]) if {
	[host, remainder] := _split_domain(image)
	lowered := lower(host)
	domain := object.get({"index.docker.io": "docker.io"}, lowered, lowered)
}

_split_domain(image) := [host, substring(image, i + 1, -1)] if {
	i := indexof(image, "/")
	i > 0
	host := substring(image, 0, i)
	_registry_host(host)
} else := ["docker.io", image]

_registry_host(component) if contains(component, ".")

_registry_host(component) if contains(component, ":")

_registry_host("localhost")

_registry_host(component) if lower(component) != component

_docker_library(domain, remainder) := concat("/", ["library", remainder]) if {
	domain == "docker.io"
	not contains(remainder, "/")
} else := remainder

# ---------------------------------------------------------------------------
# Message helpers.
# ---------------------------------------------------------------------------

# ["a", "b"] -> "[a, b]"; [] -> "[] (none)"
fmt_list(items) := "[] (none)" if {
	count(items) == 0
} else := sprintf("[%s]", [concat(", ", [sprintf("%v", [x]) | some x in items])])
