"""The code must also run on ROS 2 Humble's Python 3.10 (Jetson): no newer syntax."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for folder in ('av_privacy_ros', 'launch', 'scripts', 'test')
                 for p in (REPO / folder).glob('*.py')) + [REPO / 'setup.py']


@pytest.mark.parametrize('path', SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_parses_as_python_310(path: Path) -> None:
    """Every source file parses with the Python 3.10 grammar (no except*, no PEP 695 ...)."""
    ast.parse(path.read_text(encoding='utf-8'), filename=str(path), feature_version=(3, 10))


def test_no_python_311_only_modules() -> None:
    """Modules that appeared after 3.10 (tomllib) and typing.Self are not used."""
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding='utf-8'))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ''] + ['%s.%s' % (node.module, a.name)
                                               for a in node.names]
            else:
                continue
            assert not any(n == 'tomllib' or n.endswith('typing.Self') for n in names), path
