"""Run ``evaluate_masks`` as ``python -m av_privacy_ros.evaluation``."""

import sys

from .cli import main

sys.exit(main())
