package kube_intent.admission_test.image_digest_pinned

import data.kube_intent.admission_test.fixtures as fx

tagged := json.patch(fx.input_base, [{"op": "replace", "path": "/pod/spec/containers/0/image", "value": "nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3"}])

test_audits_image_without_digest if {
	d := fx.decide(tagged)
	v := fx.only(d, "image-digest-pinned")
	v.enforcement == "dryrun"
	v.field == "spec.containers[0].image"
	startswith(v.message, `image "nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3" of container "vllm" is not pinned by digest: use <image>@sha256:<digest>`)
	d.allowed # dryrun: audited only
}

test_truncated_digest_is_not_a_pin if {
	inp := json.patch(fx.input_base, [{"op": "replace", "path": "/pod/spec/initContainers/0/image", "value": "registry.example.com/tools/fetcher@sha256:0123abcd"}])
	fx.only(fx.decide(inp), "image-digest-pinned").field == "spec.initContainers[0].image"
}

test_not_fired_for_pinned_images if {
	fx.findings(fx.base_decision, "image-digest-pinned") == []
}

test_tag_and_digest_is_pinned if {
	# The base vllm image is "name:tag@sha256:...".
	contains(fx.input_base.pod.spec.containers[0].image, ":1.3@sha256:")
	fx.findings(fx.base_decision, "image-digest-pinned") == []
}

test_enforcement_override if {
	d := fx.decide_enforced(tagged, {"image-digest-pinned": "deny"})
	fx.only(d, "image-digest-pinned").enforcement == "deny"
	not d.allowed
}
