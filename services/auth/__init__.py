"""Who is signed in, and with which roles, outside development mode. No Streamlit here.

* :mod:`services.auth.roles`  — ``MLOPS_OIDC_ROLE_MAP`` (group → console roles), a person's groups → roles
* :mod:`services.auth.claims` — verified OIDC claims (``st.user``, a bearer token) → :class:`Principal`
* :mod:`services.auth.proxy`  — identity from an authenticating reverse proxy's headers, trusted addresses only
* :mod:`services.auth.tokens` — a bearer token verified against the issuer's published keys (discovery, JWKS)
* :mod:`services.auth.local`  — when development identities are refused (data that is not on this machine)
* :mod:`services.auth.cli`    — the command line's actor: a dev identity, or the verified token's subject

The Streamlit side (login screen, sidebar, refusal pages) is :mod:`dashboard.identity`.
"""

AUTH_MODES = ("dev", "oidc", "proxy")
