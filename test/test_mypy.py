"""Run mypy (static type check, configured in setup.cfg) over the package."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.linter
@pytest.mark.mypy
def test_mypy() -> None:
    """The package's type hints agree with the code (setup.cfg's [mypy] says what is checked)."""
    api = pytest.importorskip('mypy.api', reason='mypy is not installed (pip install mypy)')
    stdout, stderr, rc = api.run(['--config-file', str(REPO / 'setup.cfg'),
                                  '--cache-dir', str(REPO / '.mypy_cache'),
                                  str(REPO / 'av_privacy_ros')])
    assert rc == 0, 'mypy found type errors:\n%s%s' % (stdout, stderr)
