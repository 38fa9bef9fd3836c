"""Streamlit glue: entrypoint, bootstrap, components, session-state keys."""
