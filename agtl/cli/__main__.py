import sys

from agtl.cli import main

sys.exit(main())
