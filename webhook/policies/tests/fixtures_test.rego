# Shared test fixtures: one clean, allowed base input, and helpers that build
# "the base input with one change", so that each test reads as exactly that.
#
# The decision helpers pin data.kube_intent.config to `config` below, so the
# tests do not depend on the operator-edited policies/data.json.
package kube_intent.admission_test.fixtures

digest := "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

config := {
	"allowed_registries": ["nvcr.io/", "docker.io/vllm/", "ghcr.io/", "registry.k8s.io/", "registry.example.com/"],
	"data_class_levels": {"public": 0, "internal": 1, "confidential": 2, "restricted": 3},
	"max_grant_ttl_seconds": 3600,
	"default_grant_ttl_seconds": 900,
	"justification_min_level": 2,
	"enforcement": {},
}

registration := {
	"name": "summarizer",
	"namespace": "team-a",
	"serviceAccounts": ["summarizer"],
	"owners": ["alice@example.com"],
	"models": ["meta/llama-3.1-*", "mistralai/**"],
	"dataClasses": ["public", "internal"],
	"tools": ["vector-search", "web-fetch"],
	"egress": ["api.example.com", "*.s3.amazonaws.com:443"],
	"accelerators": {"max": 2, "resources": ["nvidia.com/gpu", "nvidia.com/mig-*"]},
	"maxGrantTTLSeconds": 1800,
	"suspended": false,
}

intent := {
	"purpose": "inference",
	"models": ["meta/llama-3.1-8b-instruct"],
	"dataClasses": ["public", "internal"],
	"tools": ["vector-search"],
	"egress": ["api.example.com:443"],
	"accelerators": {"count": 1, "resource": "nvidia.com/gpu"},
	"ttl": "10m",
	"ttlSeconds": 600,
}

pod := {
	"apiVersion": "v1",
	"kind": "Pod",
	"metadata": {
		"name": "summarizer-7f9c",
		"namespace": "team-a",
		"labels": {"kube-intent.io/agent": "summarizer"},
		"annotations": {"kube-intent.io/intent": json.marshal(intent)},
	},
	"spec": {
		"serviceAccountName": "summarizer",
		"initContainers": [{"name": "fetch-weights", "image": sprintf("registry.example.com/tools/fetcher@%s", [digest])}],
		"containers": [
			{
				"name": "vllm",
				"image": sprintf("nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3@%s", [digest]),
				"resources": {"limits": {"nvidia.com/gpu": 1}},
			},
			{"name": "metrics", "image": sprintf("docker.io/vllm/metrics-sidecar@%s", [digest])},
		],
	},
}

input_base := {
	"request": {
		"uid": "0b6e1f3a-0000-4000-8000-000000000001",
		"operation": "CREATE",
		"namespace": "team-a",
		"name": "summarizer-7f9c",
		"userInfo": {"username": "system:serviceaccount:team-a:deployer", "groups": ["system:serviceaccounts"]},
		"dryRun": false,
	},
	"pod": pod,
	"workload": {
		"accelerators": [{"container": "vllm", "containerType": "container", "resource": "nvidia.com/gpu", "count": 1}],
		"claims": [],
		"total": 1,
	},
	"identity": {
		"agent": "summarizer",
		"namespace": "team-a",
		"serviceAccount": "summarizer",
		"spiffeId": "spiffe://cluster.local/ns/team-a/sa/summarizer",
		"bound": true,
		"registration": registration,
		"registeredIn": ["team-a"],
	},
	"intent": intent,
}

# --- "base input with one change" -------------------------------------------
# Deep merge (object.union): objects merge, arrays and scalars are replaced.

with_change(patch) := object.union(input_base, patch)

with_intent(patch) := with_change({"intent": patch})

with_registration(patch) := with_change({"identity": {"registration": patch}})

with_identity(patch) := with_change({"identity": patch})

with_workload(patch) := with_change({"workload": patch})

with_pod_spec(patch) := with_change({"pod": {"spec": patch}})

# RFC 6902 JSON Patch, for removals and list edits.
patched(operations) := json.patch(input_base, operations)

# --- decisions ----------------------------------------------------------------

decide(inp) := d if {
	d := data.kube_intent.admission.decision with input as inp with data.kube_intent.config as config
}

# The decision with data.kube_intent.config.enforcement overridden.
decide_enforced(inp, enforcement) := d if {
	d := data.kube_intent.admission.decision with input as inp
		with data.kube_intent.config as config
		with data.kube_intent.config.enforcement as enforcement
}

# The decision under a config whose top-level keys are replaced by `changes`
# (shallow, like the policy's own merge: a new data_class_levels replaces the table).
decide_config(inp, changes) := d if {
	cfg := object.union(object.remove(config, object.keys(changes)), changes)
	d := data.kube_intent.admission.decision with input as inp with data.kube_intent.config as cfg
}

# The findings of one rule.
findings(d, rule) := [v | some v in d.violations; v.rule == rule]

# The single finding of `rule`, which must be the only one.
only(d, rule) := vs[0] if {
	vs := findings(d, rule)
	count(vs) == 1
}

rules_of(d) := {v.rule | some v in d.violations}

# The base decision for reference.
base_decision := decide(input_base)
