"""``python -m services serve``: the gateway on uvicorn over the composition root's registry and serving ports."""

from __future__ import annotations


def serve(container, host: str = "127.0.0.1", port: int = 8080, *, log_level: str = "info") -> int:
    import uvicorn

    from services.gateway import GatewayConfig
    from services.gateway.app import build_app

    source = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0', '::') else host}:{port}/"
    config = GatewayConfig.from_env(tracking_uri=container.settings.mlflow_tracking_uri, source=source)
    app = build_app(container.registry, container.serving, config)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on")
    return 0
