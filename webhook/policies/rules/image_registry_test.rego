package kube_intent.admission_test.image_registry

import data.kube_intent.admission.normalize_image
import data.kube_intent.admission_test.fixtures as fx

# The base input with container [1] ("metrics") running `image`.
with_image(image) := json.patch(fx.input_base, [{"op": "replace", "path": "/pod/spec/containers/1/image", "value": image}])

registry_fields(image) := [v.field | some v in fx.findings(fx.decide(with_image(image)), "image-registry")]

test_fires_for_image_outside_allowed_registries if {
	d := fx.decide(with_image("quay.io/evil/miner:latest"))
	v := fx.only(d, "image-registry")
	v.enforcement == "deny"
	v.field == "spec.containers[1].image"
	v.message == `image "quay.io/evil/miner:latest" of container "metrics" is not from an allowed registry; allowed prefixes (data.kube_intent.config.allowed_registries): [nvcr.io/, docker.io/vllm/, ghcr.io/, registry.k8s.io/, registry.example.com/]`
	not d.allowed
}

test_short_name_is_docker_library if {
	v := fx.only(fx.decide(with_image("busybox:1.36")), "image-registry")
	contains(v.message, `image "busybox:1.36" (= docker.io/library/busybox:1.36) of container "metrics"`)
}

test_docker_hub_organisation_is_allowed_by_prefix if {
	registry_fields("vllm/vllm-openai:v0.6.3") == []
	registry_fields("docker.io/vllm/vllm-openai:v0.6.3") == []
	registry_fields("index.docker.io/vllm/vllm-openai:v0.6.3") == []
}

test_other_docker_hub_organisation_is_denied if {
	registry_fields("vllmx/vllm-openai") == ["spec.containers[1].image"]
	registry_fields("evil/vllm") == ["spec.containers[1].image"]
}

test_lookalike_host_is_denied if {
	registry_fields("nvcr.io.evil.example/nim/llama") == ["spec.containers[1].image"]
	registry_fields("localhost:5000/nvcr.io/nim/llama") == ["spec.containers[1].image"]
}

test_prefix_without_slash_still_needs_a_path_boundary if {
	d := fx.decide_config(with_image("nvcr.io.evil.example/nim/llama"), {"allowed_registries": ["nvcr.io", "registry.example.com"]})
	fx.only(d, "image-registry").field == "spec.containers[1].image"
	fx.findings(fx.decide_config(fx.input_base, {"allowed_registries": ["nvcr.io", "registry.example.com", "docker.io/vllm"]}), "image-registry") == []
}

test_registry_host_is_case_insensitive if {
	registry_fields("NVCR.IO/nim/meta/llama") == []
}

test_every_container_kind_is_checked if {
	inp := object.union(fx.input_base, {"pod": {"spec": {
		"initContainers": [{"name": "init", "image": "alpine"}],
		"ephemeralContainers": [{"name": "debug", "image": "quay.io/debug/shell"}],
	}}})
	[v.field | some v in fx.findings(fx.decide(inp), "image-registry")] == ["spec.ephemeralContainers[0].image", "spec.initContainers[0].image"]
}

test_missing_image_is_denied if {
	inp := json.remove(fx.input_base, ["pod/spec/containers/1/image"])
	fx.only(fx.decide(inp), "image-registry").field == "spec.containers[1].image"
}

test_not_fired_for_allowed_images if {
	fx.findings(fx.base_decision, "image-registry") == []
}

test_no_registries_configured_denies_all if {
	d := fx.decide_config(fx.input_base, {"allowed_registries": []})
	count(fx.findings(d, "image-registry")) == 3
}

test_enforcement_override if {
	d := fx.decide_enforced(with_image("busybox"), {"image-registry": "warn"})
	fx.only(d, "image-registry").enforcement == "warn"
	d.allowed
}

test_normalize_image if {
	normalize_image("busybox") == "docker.io/library/busybox"
	normalize_image("busybox:1.36") == "docker.io/library/busybox:1.36"
	normalize_image("library/busybox") == "docker.io/library/busybox"
	normalize_image("vllm/vllm-openai:latest") == "docker.io/vllm/vllm-openai:latest"
	normalize_image("index.docker.io/vllm/x") == "docker.io/vllm/x"
	normalize_image("docker.io/ubuntu") == "docker.io/library/ubuntu"
	normalize_image("localhost/x") == "localhost/x"
	normalize_image("localhost:5000/x") == "localhost:5000/x"
	normalize_image("Registry.Example.com/x/y") == "registry.example.com/x/y"
	normalize_image("nvcr.io/nim/meta/llama@sha256:abc") == "nvcr.io/nim/meta/llama@sha256:abc"
	normalize_image("busybox@sha256:abc") == "docker.io/library/busybox@sha256:abc"
}
