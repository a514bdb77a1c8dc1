"""``python -m av_privacy_ros.bag``: the anonymize_bag command line."""

import sys

from .cli import main

if __name__ == '__main__':
    sys.exit(main())
