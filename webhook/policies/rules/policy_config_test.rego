package kube_intent.admission_test.policy_config

import data.kube_intent.admission_test.fixtures as fx

busybox := json.patch(fx.input_base, [{"op": "replace", "path": "/pod/spec/containers/1/image", "value": "busybox"}])

test_warns_about_unknown_rule if {
	d := fx.decide_enforced(fx.input_base, {"image-regsitry": "warn"})
	v := fx.only(d, "policy-config")
	v.enforcement == "warn"
	v.field == `data.kube_intent.config.enforcement["image-regsitry"]`
	startswith(v.message, `enforcement override for unknown rule "image-regsitry" is ignored: use a rule id from data.kube_intent.admission.rule_catalog`)
	d.allowed
}

test_invalid_level_keeps_the_default if {
	d := fx.decide_enforced(busybox, {"image-registry": "off"})
	fx.only(d, "policy-config").message == `enforcement override "off" for rule "image-registry" is invalid (use deny, warn or dryrun); its default "deny" applies`
	fx.only(d, "image-registry").enforcement == "deny"
	not d.allowed
}

test_enforcement_must_be_an_object if {
	d := fx.decide_enforced(busybox, "warn")
	fx.only(d, "policy-config").field == "data.kube_intent.config.enforcement"
	fx.only(d, "image-registry").enforcement == "deny"
}

test_not_fired_for_valid_overrides if {
	d := fx.decide_enforced(fx.input_base, {"image-registry": "warn", "image-digest-pinned": "deny"})
	fx.findings(d, "policy-config") == []
}

test_enforcement_override if {
	d := fx.decide_enforced(fx.input_base, {"nope": "warn", "policy-config": "dryrun"})
	fx.only(d, "policy-config").enforcement == "dryrun"
}
