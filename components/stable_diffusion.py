"""The `StableDiffusion` component: typed app inputs -> a complete deployment.

Read `__init__` as the table of contents; each step lives in its own module.
"""

# No `from __future__ import annotations`: Pulumi's schema inference (provider/) reads the
# annotations of `__init__`'s `args` and of the outputs below as objects.
import re
from typing import Optional

import pulumi

from . import autoscaling, image, monitoring, networking, node_pools, secrets, stablestudio, workload
from .args import ApiCredentials, ApiEndpoint, HfModel, StableDiffusionArgs
from .config import parse_app_config
from .meta import Names

TYPE_TOKEN = "stable-diffusion:index:StableDiffusion"
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,28}[a-z0-9])?$")


class StableDiffusion(pulumi.ComponentResource):
    """Stable Diffusion inference on Kubernetes: GPU node pool, secrets, model cache, Deployment, Service, Ingress with auth, NetworkPolicy, PodDisruptionBudget, KEDA autoscaling, optionally a Prometheus Operator PodMonitor and StableStudio."""  # noqa: E501 (schema text, one line)

    external_api: pulumi.Output[ApiEndpoint]
    """{host, port, protocol, base_path, url} through the Ingress."""
    internal_api: pulumi.Output[ApiEndpoint]
    """{host, port, protocol, base_path, url} of the ClusterIP Service."""
    hf_model: pulumi.Output[HfModel]
    """{model_hf_name} of the default model."""
    api_credentials: Optional[pulumi.Output[ApiCredentials]]
    """Secret {username, password} of the API's basic auth; absent when auth is off."""

    def __init__(self, name: str, args: StableDiffusionArgs, opts: Optional[pulumi.ResourceOptions] = None):
        if not _NAME.match(name):
            raise ValueError(
                f"component name '{name}' must be a DNS label of at most 30 characters "
                "(it prefixes every Kubernetes name)"
            )
        app = parse_app_config(args["app"])  # raises before anything is declared
        super().__init__(TYPE_TOKEN, name, None, opts)
        names = Names(name, app.namespace)
        child = pulumi.ResourceOptions(parent=self)

        # 1. Nodes: the GPU node pool (Karpenter / GKE) and where the pods go.
        pool = node_pools.declare_node_pool(app, names, child)
        where = node_pools.placement(app, names)

        # 2. Namespace (Pod Security "restricted") and everything inside it.
        ns = workload.namespace(names, child)
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        account = workload.service_account(names, in_ns)

        # 3. Secrets: HF token and basic-auth htpasswd.
        token = secrets.hf_token(app, names, in_ns, args.get("hf_token"))
        auth = secrets.basic_auth(app, names, in_ns)

        # 4. The image (prebuilt, or built from inference/ and pushed or loaded locally).
        img = image.image(app, names, child, secrets.registry_password(app, args.get("registry_password")))

        # 5. Model cache, Deployment, PodDisruptionBudget.
        cache = workload.shared_cache(app, names, in_ns)
        needs = [account, ns]
        needs += [r for r in (pool, cache, img.resource, token and token.resource, auth and auth.secret) if r]
        deployment = workload.deployment(
            app, names, img, where, token, auth, pulumi.ResourceOptions(parent=self, depends_on=needs)
        )
        workload.disruption_budget(names, in_ns)

        # 6. StableStudio beside the API (optional): Deployment, Service, NetworkPolicy.
        studio = stablestudio.deployment(app, names, pulumi.ResourceOptions(parent=self, depends_on=[ns, account]))
        studio_svc = stablestudio.service(app, names, in_ns)
        stablestudio.network_policy(app, names, in_ns)

        # 7. Networking: Service, the peers' headless Service, Ingress (API, and StableStudio's
        #    path), NetworkPolicy.
        svc = networking.service(names, in_ns)
        networking.peers_service(names, in_ns)
        ing = networking.ingress(app, names, pulumi.ResourceOptions(
            parent=self, depends_on=[ns, svc, *(r for r in (studio, studio_svc) if r)]))
        networking.network_policy(app, names, in_ns)

        # 8. Monitoring: the PodMonitor that has the Prometheus Operator scrape /metrics (optional).
        monitoring.pod_monitor(app, names, in_ns)

        # 9. Autoscaling (KEDA) on the queue depth that Prometheus scrapes.
        autoscaling.scaled_object(app, names, pulumi.ResourceOptions(parent=self, depends_on=[ns, deployment]))

        # 10. Outputs.
        self.external_api = networking.external_api(app, ing)
        self.internal_api = pulumi.Output.from_input(networking.internal_api(names))
        self.hf_model = pulumi.Output.from_input(
            {"model_hf_name": app.stable_diffusion.hugging_face_model.model_hf_name}
        )
        self.api_credentials = auth.credentials if auth else None
        outputs = {
            "external_api": self.external_api,
            "internal_api": self.internal_api,
            "hf_model": self.hf_model,
        }
        if self.api_credentials is not None:
            outputs["api_credentials"] = self.api_credentials
        self.register_outputs(outputs)
