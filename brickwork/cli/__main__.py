import sys

from brickwork.cli import main

sys.exit(main())
