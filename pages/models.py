"""Model history: models → a model → a version → compare. The URL holds the view:
``/models``, ``?model=NAME``, ``?model=NAME&version=V``, ``?model=NAME&compare=3,5[&baseline=3]``.

Routing only; the views are in :mod:`dashboard.models_view`, :mod:`dashboard.version_view` and
:mod:`dashboard.compare_view`."""

from __future__ import annotations

import streamlit as st

from dashboard.compare_view import compare_page
from dashboard.components import guard, show_error
from dashboard.models_view import model_page, models_list
from dashboard.nav import link
from dashboard.version_view import version_page
from services.errors import ConsoleError, NotFound
from services.history import parse_compare


def main() -> None:
    qp = st.query_params
    name = qp.get("model")
    version = qp.get("version")
    compare = qp.get("compare")
    try:
        if not name:
            models_list()
        elif compare:
            versions = parse_compare(compare)
            if len(versions) < 2:
                st.warning("Choose at least two versions to compare.")
                model_page(name)
            else:
                compare_page(name, versions)
        elif version:
            version_page(name, version)
        else:
            model_page(name)
    except NotFound as exc:
        st.title("Models")
        show_error(exc)
        link("models", "Back to all models", icon=":material/arrow_back:")
    except ConsoleError as exc:
        show_error(exc)


with guard("Models"):
    main()
