# accelerator-side-door
#
# A governed pod must get its accelerators through an allocation (a device
# plugin resource, a DRA claim, a GPU-sharing scheduler's share), which the
# budget and the intent account for. workload.sideDoors lists the paths that
# reach devices without one (see docs/accelerator-detection.md):
#
#   env           a variable a container runtime hook turns into device nodes
#                 (NVIDIA_VISIBLE_DEVICES=all); it also overrides what the
#                 device plugin allocated, because the pod's env is applied last
#   hostPath      a volume of device nodes, or of a directory above them (/dev, /)
#   privileged    a privileged container sees every device on the node
#   runtimeClass  a GPU runtime class on a pod that allocates nothing: the image's
#                 own NVIDIA_VISIBLE_DEVICES (every CUDA image sets "all") decides
#   annotation    a pod annotation some runtimes read as a device request (CDI)
#
# This rule only protects accelerators. General control of privileged pods and
# hostPath volumes belongs to Pod Security Admission ("baseline" refuses both).
package kube_intent.admission

rule_catalog["accelerator-side-door"] := {
	"enforcement": "deny",
	"summary": "The pod must not reach accelerator devices without allocating them: no device env vars, device hostPath volumes, privileged containers, GPU runtime class without an allocation, or device annotations.",
}

# What to do instead, appended to every message.
side_door_remedy := "request the accelerator as a resource (e.g. nvidia.com/gpu: 1 in resources.limits) or a DRA claim and declare it in the intent instead"

side_door_messages := {
	"env": "container %q sets %s=%s, which makes the container runtime expose accelerator devices that were not allocated (and overrides those that were): remove it (the device plugin sets it for the devices it allocates) and %s",
	"hostPath": "volume %q mounts host path %q, which holds accelerator device nodes; device hostPath volumes are not allowed on governed pods: %s",
	"privileged": "container %q is privileged and so sees every device on the node, accelerators included; privileged containers are not allowed on governed pods: drop securityContext.privileged and %s",
	"runtimeClass": "runtimeClassName %q exposes accelerators but the pod allocates none, so the image decides which devices it sees: %s, or remove runtimeClassName",
	"annotation": "annotation %q asks the container runtime for devices (%s) outside any allocation; it is not allowed on governed pods: remove it and %s",
}

side_door_message(door) := sprintf(side_door_messages.env, [_door_text(door, "container"), _door_text(door, "name"), _door_text(door, "value"), side_door_remedy]) if {
	door.kind == "env"
} else := sprintf(side_door_messages.hostPath, [_door_text(door, "name"), _door_text(door, "value"), side_door_remedy]) if {
	door.kind == "hostPath"
} else := sprintf(side_door_messages.privileged, [_door_text(door, "container"), side_door_remedy]) if {
	door.kind == "privileged"
} else := sprintf(side_door_messages.runtimeClass, [_door_text(door, "name"), side_door_remedy]) if {
	door.kind == "runtimeClass"
} else := sprintf(side_door_messages.annotation, [_door_text(door, "name"), _door_text(door, "value"), side_door_remedy]) if {
	door.kind == "annotation"
} else := sprintf("the pod reaches accelerator devices without allocating them (%v): %s", [object.get(door, "kind", "?"), side_door_remedy])

_door_text(door, key) := door[key] if {
	is_string(door[key])
} else := "?"

_door_field(door) := door.field if {
	is_string(door.field)
	door.field != ""
} else := "spec"

# Independent of the intent and of the registration: a side door is refused
# whoever the agent is, and even when the rest of the pod is in order.
violation contains new_violation("accelerator-side-door", _door_field(door), side_door_message(door)) if {
	some door in workload_side_doors
}
