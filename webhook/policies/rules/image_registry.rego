# image-registry
#
# Every container, init container and ephemeral container image must come from
# one of config.allowed_registries (prefixes of the Docker-normalised image
# reference: "vllm/vllm-openai" is "docker.io/vllm/vllm-openai", "busybox" is
# "docker.io/library/busybox").
package kube_intent.admission

rule_catalog["image-registry"] := {
	"enforcement": "deny",
	"summary": "Each container/initContainer/ephemeralContainer image must start with one of config.allowed_registries (after Docker normalisation).",
}

violation contains new_violation("image-registry", ref.path, msg) if {
	some ref in pod_images
	not image_from_allowed_registry(ref.image)
	msg := sprintf(
		"image %s of container %q is not from an allowed registry; allowed prefixes (data.kube_intent.config.allowed_registries): %s",
		[image_description(ref.image), object.get(ref.container, "name", "?"), fmt_list(allowed_registries)],
	)
}

image_from_allowed_registry(image) if {
	is_string(image)
	strings.any_prefix_match(normalize_image(image), allowed_registries)
}

# `"vllm/vllm-openai:v0.6" (= docker.io/vllm/vllm-openai:v0.6)`
image_description(image) := sprintf("%q", [image]) if {
	is_string(image)
	normalize_image(image) == image
} else := sprintf("%q (= %s)", [image, normalize_image(image)]) if {
	is_string(image)
} else := sprintf("%v", [image])
