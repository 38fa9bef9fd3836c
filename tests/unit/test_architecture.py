"""House rules that keep the layers apart."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_service_layer_never_imports_streamlit():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "services").rglob("*.py") if "streamlit" in _imports(p)]
    assert offenders == []


def test_pages_build_no_clients_and_run_no_sql():
    banned = {"sqlalchemy", "mlflow", "kubernetes", "psycopg", "sqlite3"}
    offenders = {str(p.relative_to(ROOT)): sorted(_imports(p) & banned) for p in (ROOT / "pages").glob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_page_is_registered_with_the_navigation():
    from dashboard.nav import PAGE_SPECS

    files = {p.name for p in (ROOT / "pages").glob("*.py")}
    assert files == {spec[0] for spec in PAGE_SPECS.values()}
    assert not (ROOT / "dashboard" / "pages").exists(), "no legacy auto-discovery folder next to the entrypoint"
