"""MLOps Console service layer. No Streamlit here: pages, the CLI and tests all call into it."""
