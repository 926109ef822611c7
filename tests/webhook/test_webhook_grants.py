"""The grant seam wired end to end through the app: mint on /mutate, verify on /validate."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from identity.grants import GRANT_ANNOTATION, GrantIssuer
from identity.keys import KeySet, generate_keys
from tests.support.admission import AppClient, apply_patch, patch_of, post, response_of, review
from tests.support.grants import ISSUER
from tests.support.manifests import example_pod
from webhook.grants import VerdictGrants


@pytest.fixture
def keyset(tmp_path: Path) -> KeySet:
    generate_keys(tmp_path)
    return KeySet.load(tmp_path)


@pytest.fixture
def client(make_client: AppClient, keyset: KeySet) -> httpx.AsyncClient:
    grants = VerdictGrants(GrantIssuer(lambda: keyset, ISSUER, policy_revision=lambda: "rev"))
    return make_client(grants=grants, keys=lambda: keyset, issuer=ISSUER)


async def test_allowed_pod_gets_a_grant_that_validate_accepts(client: httpx.AsyncClient) -> None:
    pod = example_pod("allowed-vllm-llama")
    async with client:
        mutated = apply_patch(
            pod, patch_of(response_of(await post(client, "/mutate", review(pod))))
        )
        assert GRANT_ANNOTATION in mutated["metadata"]["annotations"]
        volumes = {v["name"] for v in mutated["spec"]["volumes"]}
        assert {"kube-intent-token", "kube-intent-grant"} <= volumes
        # Reinvocation keeps the grant: no second grant, no duplicate volumes.
        again = response_of(await post(client, "/mutate", review(mutated)))
        assert "patch" not in again
        assert response_of(await post(client, "/validate", review(mutated)))["allowed"] is True


async def test_validate_refuses_an_intent_edited_after_the_grant(client: httpx.AsyncClient) -> None:
    pod = example_pod("allowed-vllm-llama")
    async with client:
        mutated = apply_patch(
            pod, patch_of(response_of(await post(client, "/mutate", review(pod))))
        )
        # A later mutator (or the author through another path) widens the declared data classes.
        intent = mutated["metadata"]["annotations"]["kube-intent.io/intent"]
        mutated["metadata"]["annotations"]["kube-intent.io/intent"] = intent.replace(
            "- internal", "- public\n- internal"
        )
        response = response_of(await post(client, "/validate", review(mutated)))
    assert response["allowed"] is False
    assert "[grant-integrity]" in response["status"]["message"]


async def test_validate_refuses_a_gpu_pod_without_a_grant(client: httpx.AsyncClient) -> None:
    async with client:
        response = response_of(
            await post(client, "/validate", review(example_pod("allowed-vllm-llama")))
        )
    assert response["allowed"] is False
    assert "[grant-integrity]" in response["status"]["message"]


async def test_jwks_and_discovery(client: httpx.AsyncClient, keyset: KeySet) -> None:
    async with client:
        jwks = (await client.get("/.well-known/jwks.json")).json()
        discovery = (await client.get("/.well-known/openid-configuration")).json()
    assert {k["kid"] for k in jwks["keys"]} == {k["kid"] for k in keyset.jwks()["keys"]}
    assert all(k["alg"] == "ES256" and "d" not in k for k in jwks["keys"])
    assert discovery["issuer"] == ISSUER
    assert discovery["token_endpoint"] == f"{ISSUER}/token"
    assert json.dumps(discovery).count("jwks.json") == 1


async def test_token_endpoint_without_a_cluster_is_unavailable(client: httpx.AsyncClient) -> None:
    async with client:
        response = await client.post("/token", data={"grant_type": "x"})
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["cache-control"] == "no-store"


async def test_a_dry_run_is_signed_no_grant_and_still_validates(
    client: httpx.AsyncClient,
) -> None:
    """`kubectl create --dry-run=server` leaves no audit row, so it must get no usable grant."""
    pod = example_pod("allowed-vllm-llama")
    pod["metadata"]["annotations"][GRANT_ANNOTATION] = "copied.from.elsewhere"
    body = review(pod)
    body["request"]["dryRun"] = True
    async with client:
        mutated = apply_patch(pod, patch_of(response_of(await post(client, "/mutate", body))))
        assert GRANT_ANNOTATION not in mutated["metadata"]["annotations"]
        assert "kube-intent-token" in {v["name"] for v in mutated["spec"]["volumes"]}
        body = review(mutated)
        body["request"]["dryRun"] = True
        assert response_of(await post(client, "/validate", body))["allowed"] is True


ENDPOINT_ENV = "KUBE_INTENT_TOKEN_ENDPOINT"


@pytest.mark.parametrize(
    "authored",
    [
        pytest.param([{"name": ENDPOINT_ENV, "value": "https://attacker.example"}], id="own-value"),
        pytest.param(
            [
                {"name": ENDPOINT_ENV, "value": f"{ISSUER}/token"},
                {"name": ENDPOINT_ENV, "value": "https://attacker.example"},
            ],
            id="duplicate-after-ours",
        ),
    ],
)
async def test_the_mutation_owns_its_env_names(
    client: httpx.AsyncClient, authored: list[dict[str, str]]
) -> None:
    """The container gets the last of duplicate env names: only ours may remain."""
    pod = example_pod("allowed-vllm-llama")
    pod["spec"]["containers"][0]["env"] = [{"name": "KEEP", "value": "me"}, *authored]
    async with client:
        mutated = apply_patch(
            pod, patch_of(response_of(await post(client, "/mutate", review(pod))))
        )
        env = mutated["spec"]["containers"][0]["env"]
        assert [e["value"] for e in env if e["name"] == ENDPOINT_ENV] == [f"{ISSUER}/token"]
        assert {"name": "KEEP", "value": "me"} in env
        assert response_of(await post(client, "/validate", review(mutated)))["allowed"] is True
        # A later mutator appending a duplicate is caught on the final object.
        env.append({"name": ENDPOINT_ENV, "value": "https://attacker.example"})
        response = response_of(await post(client, "/validate", review(mutated)))
    assert response["allowed"] is False
    assert f"spec.containers[0].env[{ENDPOINT_ENV}]" in response["status"]["message"]
