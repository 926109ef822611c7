# image-digest-pinned
#
# Every image should be pinned by digest (@sha256:<64 hex>), so that what was
# admitted is what runs. Being rolled out: only audited (dryrun) by default.
package kube_intent.admission

rule_catalog["image-digest-pinned"] := {
	"enforcement": "dryrun",
	"summary": "Each image should be pinned by digest (name@sha256:<64 hex>).",
}

violation contains new_violation("image-digest-pinned", ref.path, msg) if {
	some ref in pod_images
	not image_pinned(ref.image)
	msg := sprintf(
		"image %v of container %q is not pinned by digest: use <image>@sha256:<digest> (e.g. from `crane digest` or `docker buildx imagetools inspect`)",
		[image_description(ref.image), object.get(ref.container, "name", "?")],
	)
}

image_pinned(image) if {
	is_string(image)
	regex.match(`@sha256:[a-f0-9]{64}$`, image)
}
