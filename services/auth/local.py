"""When development identities (anyone picks anyone) are refused: when the console would act on data that is
not a local file of this machine — a database or MLflow server, or a Kubernetes cluster."""

from __future__ import annotations

ALLOW_SETTING = "MLOPS_ALLOW_DEV_AUTH"


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def not_local(*, database_url: str, tracking_uri: str, serving_backend: str) -> list[str]:
    """What is not a local file, each naming its setting (empty: everything is on this machine). A server on
    localhost counts as not local too: it may be a tunnel or a sidecar to a shared one."""
    out = []
    if not _scheme(database_url).startswith("sqlite"):
        out.append(f"MLOPS_DATABASE_URL is a {_scheme(database_url) or 'non-SQLite'} server")
    scheme = _scheme(tracking_uri)
    if scheme and not (scheme.startswith("sqlite") or scheme == "file"):
        out.append(f"MLFLOW_TRACKING_URI is a {scheme} server")
    if serving_backend != "local":
        out.append(f"MLOPS_SERVING_BACKEND is {serving_backend}")
    return out


def refusal(reasons: list[str]) -> str:
    return ("MLOPS_AUTH_MODE=dev (development identities: anyone may pick any identity) is refused because "
            + "; ".join(reasons) + ". Sign people in with MLOPS_AUTH_MODE=oidc or proxy, or set "
            f"{ALLOW_SETTING}=1 to force development identities on a machine nobody else reaches.")
