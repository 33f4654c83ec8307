"""Every checkov Kubernetes check the rendered objects are allowed to fail, with why.

The render test runs checkov once over every rendered config and fails on any failed
check not listed here, and on any entry here that no longer fails (a stale skip).
"""

CHECKOV_SKIPS: dict[str, str] = {
    "CKV_K8S_43": (
        "Image should use digest: built images do deploy by digest (pulumi-docker-build's "
        "`ref`), but the render has no build so it shows the tag, and a prebuilt "
        "`image: {repository, tag}` is a supported input (use `digest:` to pin)."
    ),
}
