"""Consumer stack: a Kubernetes Job in its own namespace that calls the app's internal API.

Everything it knows about the app comes from the app stack's outputs, read with a
StackReference: `internal_api` (where to call), `api_credentials` (a secret: it stays a
secret here and reaches the pod only through a Kubernetes Secret) and `external_api`,
re-exported for people. Renaming one of those outputs in the app stack breaks this program
at `require_output`, which is what the tests check.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_kubernetes as k8s

CURL_IMAGE = "curlimages/curl:8.11.1"
OUTPUTS_USED = ("internal_api", "external_api", "api_credentials")


def main() -> None:
    config = pulumi.Config()
    app = pulumi.StackReference(config.require("app_stack"))
    namespace_name = config.get("namespace") or "render-jobs"
    prompt = config.get("prompt") or "a lighthouse at dusk"

    internal_api = app.require_output("internal_api")
    external_api = app.require_output("external_api")
    credentials = app.require_output("api_credentials")  # secret in, secret out

    namespace = k8s.core.v1.Namespace(
        "render-jobs",
        metadata={
            "name": namespace_name,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    )
    in_namespace = pulumi.ResourceOptions(depends_on=[namespace])
    secret = k8s.core.v1.Secret(
        "sd-api-credentials",
        metadata={"name": "sd-api-credentials", "namespace": namespace_name},
        type="kubernetes.io/basic-auth",
        string_data=credentials.apply(lambda c: {"username": c["username"], "password": c["password"]}),
        opts=in_namespace,
    )
    body = json.dumps({"prompt": prompt, "steps": 20, "send_images": True})
    job = k8s.batch.v1.Job(
        "render",
        metadata={"namespace": namespace_name, "labels": {"app.kubernetes.io/name": "render"}},
        spec={
            "backoffLimit": 2,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "render"}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "render",
                            "image": CURL_IMAGE,
                            "command": ["sh", "-c"],
                            "args": [
                                'curl -fsS --retry 5 --retry-connrefused -u "$SD_USER:$SD_PASSWORD" '
                                '-H "content-type: application/json" -d "$SD_BODY" "$SD_URL/v1/txt2img" '
                                "-o /work/result.json && wc -c /work/result.json"
                            ],
                            "env": [
                                {"name": "SD_URL", "value": internal_api.apply(lambda api: api["url"].rstrip("/"))},
                                {"name": "SD_BODY", "value": body},
                                {"name": "SD_USER",
                                 "valueFrom": {"secretKeyRef": {"name": "sd-api-credentials", "key": "username"}}},
                                {"name": "SD_PASSWORD",
                                 "valueFrom": {"secretKeyRef": {"name": "sd-api-credentials", "key": "password"}}},
                            ],
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "32Mi"},
                                "limits": {"cpu": "200m", "memory": "64Mi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                        }
                    ],
                    "volumes": [{"name": "work", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
        opts=pulumi.ResourceOptions(depends_on=[namespace, secret]),
    )
    # The Job's name is auto-named by the provider (a suffix is added), so a changed
    # spec replaces it with a new Job instead of failing on an immutable field.
    pulumi.export("render_job", pulumi.Output.concat(job.metadata.namespace, "/", job.metadata.name))
    pulumi.export("app_url", external_api.apply(lambda api: api["url"]))
    pulumi.export("credentials_secret", secret.metadata.name)
