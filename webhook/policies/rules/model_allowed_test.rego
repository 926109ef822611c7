package kube_intent.admission_test.model_allowed

import data.kube_intent.admission_test.fixtures as fx

test_fires_once_per_disallowed_model if {
	inp := fx.with_intent({"models": ["meta/llama-3.1-8b-instruct", "openai/gpt-4o", "meta/llama-3.1-8b/lora"]})
	d := fx.decide(inp)
	vs := fx.findings(d, "model-allowed")
	[v.field | some v in vs] == ["intent.models[1]", "intent.models[2]"]
	every v in vs {
		v.enforcement == "deny"
	}
	vs[0].message == `model "openai/gpt-4o" is not allowed for agent "summarizer"; allowed models (Agent spec.models, glob patterns): [meta/llama-3.1-*, mistralai/**]`
	not d.allowed
	d.scopes == []
}

test_glob_star_stays_within_a_path_segment if {
	# "meta/llama-3.1-*" must not admit a model in a sub-path.
	inp := fx.with_intent({"models": ["meta/llama-3.1-8b/lora"]})
	fx.only(fx.decide(inp), "model-allowed").field == "intent.models[0]"
}

test_not_fired_for_matching_models if {
	inp := fx.with_intent({"models": ["meta/llama-3.1-70b-instruct:v2", "mistralai/mixtral/8x7b", "mistralai/mistral-7b"]})
	fx.findings(fx.decide(inp), "model-allowed") == []
}

test_empty_registration_allows_no_model if {
	inp := fx.with_registration({"models": []})
	v := fx.only(fx.decide(inp), "model-allowed")
	endswith(v.message, "allowed models (Agent spec.models, glob patterns): [] (none)")
}

test_not_fired_without_registration if {
	inp := object.union(fx.with_intent({"models": ["openai/gpt-4o"]}), {"identity": {"registration": null}})
	fx.findings(fx.decide(inp), "model-allowed") == []
}

test_enforcement_override if {
	inp := fx.with_intent({"models": ["openai/gpt-4o"]})
	d := fx.decide_enforced(inp, {"model-allowed": "warn"})
	fx.only(d, "model-allowed").enforcement == "warn"
	d.allowed
	"model:openai/gpt-4o:infer" in d.scopes # warn admits the pod with the scope it declared
}
