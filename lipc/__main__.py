import sys

from lipc.cli import main

sys.exit(main())
