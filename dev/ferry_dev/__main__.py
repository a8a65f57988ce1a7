import sys

from ferry_dev.cli import main

sys.exit(main())
