"""The Kubernetes API client: from a kubeconfig, from the pod's in-cluster credentials, or none."""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes import client, config


def api_client(kubeconfig: Path | None) -> client.ApiClient | None:
    """None when there is no cluster to talk to (local `serve` and `review` work without one)."""
    if kubeconfig is not None:
        api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig)
        )
        return api
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
        return client.ApiClient(configuration)
    return None
