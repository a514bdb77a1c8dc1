"""The README stays current: its two commands, the CI hook and the generated parameter table."""

from pathlib import Path
import re

from av_privacy_ros.params import markdown_table, PARAMETERS

REPO = Path(__file__).resolve().parents[1]


def test_readme_opens_with_the_two_commands() -> None:
    """The first code block of the quick start holds `make demo` and `make test`."""
    text = (REPO / 'README.md').read_text(encoding='utf-8')
    quick_start = text[text.index('## Quick start'):]
    first_block = re.search(r'```bash\n(.*?)```', quick_start, re.S).group(1)
    commands = [line.split('#')[0].strip() for line in first_block.splitlines()]
    assert 'make demo' in commands and 'make test' in commands
    assert 'make test' in (REPO / '.ci' / 'run').read_text(encoding='utf-8')


def test_readme_parameter_table_matches_the_node() -> None:
    """The README's parameter table is the one the node declares (regenerate it if not)."""
    text = (REPO / 'README.md').read_text(encoding='utf-8')
    assert markdown_table() in text, (
        'README parameter table is stale; regenerate it with av_privacy_ros.params.'
        'markdown_table()')
    for spec in PARAMETERS:
        assert '`%s`' % spec.name in text
